"""Parses Prometheus text (claudegate's /metrics) from stdin with prometheus_client's own
parser and prints the families as JSON, for tests/it/ops.rs. A page the parser rejects makes this
exit non-zero with the parser's error."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    families = []
    for f in text_string_to_metric_families(sys.stdin.read()):
        families.append({
            "name": f.name,
            "type": f.type,
            "help": f.documentation,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": s.value}
                for s in f.samples
            ],
        })
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
