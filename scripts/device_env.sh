# Sourced by the scripts/device_*.sh drivers on the GPU machine: the wheels carried in .whl/
# (keras, namex, optree, astropy, pyerfa, astropy-iers-data, lenstronomy for Python 3.12)
# installed --no-deps into /tmp/site when the machine lacks them, then the environment.
if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c "import keras, lenstronomy" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD KERAS_BACKEND=${KERAS_BACKEND:-jax} \
  PYTHONUNBUFFERED=1
