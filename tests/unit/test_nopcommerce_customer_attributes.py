"""nopCommerce's custom customer attributes XML, read and changed as CustomerAttributeParser writes it."""

from __future__ import annotations

import pytest
from switchyard.errors import PermanentError
from switchyard.systems.nopcommerce.customer_attributes import parse_values, with_values

HELD = ('<Attributes><CustomerAttribute ID="2"><CustomerAttributeValue><Value>Buyer</Value></CustomerAttributeValue>'
        '</CustomerAttribute><CustomerAttribute ID="5"><CustomerAttributeValue><Value>11</Value>'
        '</CustomerAttributeValue><CustomerAttributeValue><Value>12</Value></CustomerAttributeValue>'
        '</CustomerAttribute></Attributes>')


def test_attributes_xml_is_read_per_attribute_with_every_value():
    assert parse_values(HELD) == {2: ["Buyer"], 5: ["11", "12"]}
    assert parse_values(None) == parse_values("") == parse_values("  ") == {}


def test_changing_one_attribute_keeps_the_others_and_escapes_the_text():
    changed = with_values(HELD, {2: "R&D <lead>", 7: "janet-doe"})

    assert parse_values(changed) == {2: ["R&D <lead>"], 5: ["11", "12"], 7: ["janet-doe"]}
    assert "R&amp;D &lt;lead&gt;" in changed


def test_attributes_xml_from_an_empty_customer():
    assert with_values(None, {3: "x"}) == ('<Attributes><CustomerAttribute ID="3"><CustomerAttributeValue>'
                                           '<Value>x</Value></CustomerAttributeValue></CustomerAttribute></Attributes>')


@pytest.mark.parametrize("xml", [
    "<Attributes><CustomerAttribute ID=",                      # broken
    '<!DOCTYPE a [<!ENTITY x "y">]><Attributes>&x;</Attributes>',  # nopCommerce never writes a DOCTYPE
    "<Attributes>" + " " * 1_000_001 + "</Attributes>",
])
def test_attributes_xml_that_nopcommerce_does_not_write_is_refused(xml):
    with pytest.raises(PermanentError) as raised:
        parse_values(xml)
    assert raised.value.reason == "target_bad_response"
