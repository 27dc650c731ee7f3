"""Read template.yaml (with CloudFormation short-form tags) and resolve the few intrinsics the local runner needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns ``!Ref X`` into ``{"Ref": "X"}`` and ``!GetAtt A.B`` into ``{"Fn::GetAtt": [A, B]}``."""


def _multi(loader: yaml.Loader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _multi)


def load_template(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


class Resolver:
    """Resolves Ref / GetAtt / Sub against the physical resources the runner created."""

    def __init__(self, template: dict[str, Any], region: str, account: str) -> None:
        self.template = template
        self.region = region
        self.account = account
        self.refs: dict[str, Any] = {}
        self.attrs: dict[tuple[str, str], Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            self.refs[name] = spec.get("Default")
        self.refs.update({"AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws"})

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                if arg not in self.refs:
                    raise KeyError(f"unresolved Ref {arg}")
                return self.refs[arg]
            if key == "Fn::GetAtt":
                return self.attrs[(arg[0], arg[1])]
            if key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                for name, ref in self.refs.items():
                    text = text.replace("${" + name + "}", str(ref))
                return text
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value
