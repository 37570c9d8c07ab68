"""Validates scopegate config and policy files against the committed JSON Schemas with an
implementation independent of scopegate's own (python-jsonschema, draft 2020-12).

Usage: validate.py SCHEMA_DIR FILE...  A FILE is a config or a policy (told apart by
`policy_file` / `version`), or a Kubernetes manifest whose ConfigMaps hold them. Prints one
line per document checked and every error; exits 1 when any document is invalid.
"""

import json
import sys
from pathlib import Path

import jsonschema
import yaml


class Loader(yaml.SafeLoader):
    """YAML 1.2 as scopegate reads it: `2027-03-01T00:00:00Z` stays a string (PyYAML's
    1.1 resolver would make it a datetime, which no JSON Schema type matches)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def documents(path):
    """(name, kind, document) for every config or policy in the file."""
    for doc in yaml.load_all(Path(path).read_text(), Loader=Loader):
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                inner = yaml.load(text, Loader=Loader)
                if isinstance(inner, dict):
                    yield from classify(f"{path} ConfigMap {doc['metadata']['name']} {key}", inner)
        elif "kind" not in doc:
            yield from classify(str(path), doc)


def classify(name, doc):
    if "policy_file" in doc:
        yield name, "config", doc
    elif "version" in doc:
        yield name, "policy", doc
    else:
        raise SystemExit(f"{name}: neither a config (policy_file) nor a policy (version)")


def main():
    schema_dir = Path(sys.argv[1])
    validators = {}
    for kind in ("config", "policy"):
        schema = json.loads((schema_dir / f"{kind}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft202012Validator(schema)
    failed = False
    for path in sys.argv[2:]:
        for name, kind, doc in documents(path):
            errors = sorted(validators[kind].iter_errors(doc), key=lambda e: list(e.path))
            print(f"{'invalid' if errors else 'valid'} {kind}: {name}")
            for e in errors:
                print(f"  at /{'/'.join(map(str, e.path))}: {e.message}")
            failed |= bool(errors)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
