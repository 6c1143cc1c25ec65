from train._tflog import filter_tensorflow_import

filter_tensorflow_import()  # before anything imports TensorFlow (lazily, in the command)

from train._extra import run  # noqa: E402


def _main():
    from .cli import main  # its imports too: a missing extra is one line

    return main()


run(_main)
