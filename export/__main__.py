from train._tflog import filter_tensorflow_import

filter_tensorflow_import()  # before anything imports TensorFlow (lazily, in the command)

from .cli import main  # noqa: E402

main()
