#!/usr/bin/env bash
# What repo2docker does for this repository, without Docker: a fresh Python environment, binder/requirements.txt,
# then binder/postBuild, then notebook 01 executed as a participant would first run it. Prints the time of each step,
# the size of the environment and the notebook's peak memory.
#   tools/binder_simulation.sh [WORKDIR]   (default: a new temporary folder; needs python3 and network access to PyPI)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"
git clone -q "$ROOT" "$WORK/repo"
cd "$WORK/repo"
export HOME="$WORK/home" && mkdir -p "$HOME"
t0=$SECONDS
python3 -m venv "$WORK/env"
"$WORK/env/bin/python" -m pip install --quiet --disable-pip-version-check -r binder/requirements.txt
t1=$SECONDS
PATH="$WORK/env/bin:$PATH" bash binder/postBuild > /dev/null
t2=$SECONDS
PATH="$WORK/env/bin:$PATH" "$WORK/env/bin/python" tools/notebook_memory.py notebooks/01_getting_started.ipynb
echo "requirements: $((t1 - t0)) s | postBuild: $((t2 - t1)) s | environment: $(du -sm "$WORK/env" | cut -f1) MB" \
     "| demo data: $(du -sm "$HOME/.cache/hmba_toolkit" | cut -f1) MB"
