"""DynamoDB requests as the job table writes them: update expressions whose every attribute
name is aliased (`size`, `state`, `name` and hundreds more are reserved words), typed attribute
values, and conditional writes whose failed condition is an answer rather than an error."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from .aws import error_code, translate

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


class Expression:
    """Builds an update expression and its names and values; every name is aliased."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._sets: list[str] = []
        self._adds: list[str] = []
        self._removes: list[str] = []

    def n(self, attribute: str) -> str:
        alias = "#" + attribute
        self.names[alias] = attribute
        return alias

    def v(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = serialize(value)
        return placeholder

    def set(self, attribute: str, value: Any) -> Expression:
        if value is None:
            return self.remove(attribute)
        self._sets.append(f"{self.n(attribute)} = {self.v(value)}")
        return self

    def add(self, attribute: str, amount: int | AbstractSet[int]) -> Expression:
        """ADD a number to a number, or members to a set."""
        self._adds.append(f"{self.n(attribute)} {self.v(amount)}")
        return self

    def set_once(self, attribute: str, value: Any) -> Expression:
        """SET unless the item already has the attribute."""
        name = self.n(attribute)
        self._sets.append(f"{name} = if_not_exists({name}, {self.v(value)})")
        return self

    def remove(self, attribute: str) -> Expression:
        self._removes.append(self.n(attribute))
        return self

    def update(self) -> str:
        parts = []
        if self._sets:
            parts.append("SET " + ", ".join(self._sets))
        if self._adds:
            parts.append("ADD " + ", ".join(self._adds))
        if self._removes:
            parts.append("REMOVE " + ", ".join(self._removes))
        return " ".join(parts)


class ConditionFailed(Exception):
    """A condition did not hold: an expected answer, not an error."""


def conditional(where: str, call: Callable[..., Any], **kwargs: Any) -> Any:
    """Make a conditional write; raises ConditionFailed when its condition did not hold."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            raise ConditionFailed from None
        raise translate(exc, where) from None
    except BotoCoreError as exc:
        raise translate(exc, where) from None


def item_key(pk: str, sk: str) -> dict[str, Any]:
    """The key of an item (partition key `pk`, sort key `sk`), typed for a request."""
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def timestamp(seconds: float) -> Decimal:
    """A time stamp with millisecond precision (DynamoDB numbers are decimals)."""
    return Decimal(f"{seconds:.3f}")


def serialize(value: Any) -> Any:
    """A Python value typed for a request (a float travels as its exact decimal text)."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    return _SERIALIZER.serialize(value)


def plain(value: Any) -> Any:
    """A number read back as int when whole, else float; other values as they are."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def deserialize(value: Any) -> Any:
    """A value of an item as DynamoDB sends it (`{"N": "12"}`), as Python (numbers as Decimal)."""
    return _DESERIALIZER.deserialize(value)


def plain_item(raw: dict[str, Any]) -> dict[str, Any]:
    """An item as DynamoDB sends it, as plain Python values (whole numbers as int)."""
    return {k: plain(deserialize(v)) for k, v in raw.items()}


__all__ = [
    "ConditionFailed",
    "Expression",
    "conditional",
    "deserialize",
    "item_key",
    "plain",
    "plain_item",
    "serialize",
    "timestamp",
]
