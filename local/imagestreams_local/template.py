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


class _NoValue:
    """``!Ref AWS::NoValue``: the key or list item it stands for is dropped."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class Resolver:
    """Resolves Ref / GetAtt / Sub / If (and the template's Conditions) against the physical resources the runner
    created. ``parameters`` override the template's parameter defaults, as ``sam deploy --parameter-overrides``."""

    def __init__(self, template: dict[str, Any], region: str, account: str,
                 parameters: dict[str, str] | None = None) -> None:
        self.template = template
        self.region = region
        self.account = account
        self.refs: dict[str, Any] = {}
        self.attrs: dict[tuple[str, str], Any] = {}
        declared = template.get("Parameters") or {}
        unknown = sorted(set(parameters or {}) - set(declared))
        if unknown:
            raise KeyError(f"template.yaml declares no parameter {', '.join(unknown)}")
        for name, spec in declared.items():
            self.refs[name] = spec.get("Default")
        self.refs.update(parameters or {})
        self.refs.update({"AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws",
                          "AWS::StackName": "imagestreams", "AWS::NoValue": NO_VALUE})
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.template.get("Conditions") or {}).get(name)
            if spec is None:
                raise KeyError(f"unknown condition {name}")
            self._conditions[name] = self._truth(spec)
        return self._conditions[name]

    def _truth(self, spec: Any) -> bool:
        (key, arg), = spec.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self(v) for v in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self._truth(a) for a in arg)
        raise KeyError(f"unsupported condition function {key}")

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
                for (logical, attr), got in self.attrs.items():
                    text = text.replace("${" + f"{logical}.{attr}" + "}", str(got))
                return text
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self(when_true if self.condition(name) else when_false)
        if isinstance(value, dict):
            resolved = {k: self(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self(item) for item in value) if v is not NO_VALUE]
        return value
