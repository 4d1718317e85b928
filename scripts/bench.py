"""Benchmark w2v-embed on the CPU at hand: `python scripts/bench.py --help`; the cases live in scripts/bench/.

    python scripts/bench.py                      # base, 2 threads: peak, PyTorch eager vs w2v-embed
    python scripts/bench.py --files 0 --runtimes --startup --int8
    python scripts/bench.py --sizes xlsr-1b --files 0 --repeats 2 --time-export
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package scripts/bench/ (it wins over this file)

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        from bench.common import run_here

        print(json.dumps(run_here(sys.argv[2], json.loads(sys.argv[3]))))
    else:
        from bench.main import main

        main()
