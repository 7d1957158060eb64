"""nopCommerce custom customer attributes: the ``custom_customer_attributes_xml`` of a Customer DTO.

nopCommerce keeps the values of a customer's custom attributes (Customers > Customer settings > Customer form
fields) in one XML string, as ``CustomerAttributeParser`` writes it::

    <Attributes><CustomerAttribute ID="3"><CustomerAttributeValue><Value>Purchasing</Value>
    </CustomerAttributeValue></CustomerAttribute></Attributes>

For a text attribute (TextBox, MultilineTextbox) the value is the text; for the others it is the id of one of
the attribute's predefined values (``CustomerAttributeValue``). Switchyard writes text attributes and the
single-choice ones (DropdownList, RadioList: one value id, found by the value's name); not checkboxes, dates or
uploads. Changing one attribute keeps every other attribute of the customer as it was.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping

from switchyard.errors import PermanentError

# AttributeControlType: TextBox = 4, MultilineTextbox = 10 (the others pick predefined values by id)
TEXT_CONTROL_TYPES = frozenset({4, 10})
# DropdownList = 1, RadioList = 2: one of the attribute's predefined values, by its id
SINGLE_CHOICE_CONTROL_TYPES = frozenset({1, 2})
MAX_XML_CHARS = 1_000_000


def parse_values(xml: str | None) -> dict[int, list[str]]:
    """Attribute id -> its values, in document order; {} for an empty string or null."""
    if not xml or not xml.strip():
        return {}
    if len(xml) > MAX_XML_CHARS or "<!DOCTYPE" in xml.upper():  # nopCommerce never writes either
        raise PermanentError("nopCommerce customer attributes XML is not what nopCommerce writes",
                             reason="target_bad_response")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise PermanentError(f"nopCommerce customer attributes XML does not parse: {exc}",
                             reason="target_bad_response") from None
    values: dict[int, list[str]] = {}
    for attribute in root.findall("CustomerAttribute"):
        try:
            attribute_id = int(attribute.get("ID", ""))
        except ValueError:
            continue  # nopCommerce's parser skips what it cannot read, too
        values.setdefault(attribute_id, []).extend(
            value.text or "" for value in attribute.findall("CustomerAttributeValue/Value"))
    return values


def with_values(xml: str | None, changes: Mapping[int, str]) -> str:
    """``xml`` with each attribute of ``changes`` holding exactly that one value (others kept as they are)."""
    values = parse_values(xml)
    for attribute_id, value in changes.items():
        values[attribute_id] = [value]
    root = ElementTree.Element("Attributes")
    for attribute_id, texts in values.items():
        attribute = ElementTree.SubElement(root, "CustomerAttribute", {"ID": str(attribute_id)})
        for text in texts:
            holder = ElementTree.SubElement(attribute, "CustomerAttributeValue")
            ElementTree.SubElement(holder, "Value").text = text
    return ElementTree.tostring(root, encoding="unicode")
