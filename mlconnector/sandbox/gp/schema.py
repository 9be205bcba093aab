"""The sandbox's contract: the types and operations of the legacy GP Web Services endpoint it serves, the WSDL
generated from them, and the serializer that writes answers in the declared element order.

Type and property names follow Microsoft's Web Services for Microsoft Dynamics GP reference (CustomerCriteria,
CustomerSummary, GLAccountSummary, GLTransactionSummary, SalesOrder, Policy ...). The legacy endpoint's own
WSDL was not available, so element order, the SOAPAction strings and which optional properties exist are this
sandbox's choice (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree as ET

NS = "http://schemas.microsoft.com/dynamics/gp/2006/01"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

S, B, D, I, DEC = "string", "boolean", "dateTime", "int", "decimal"
Field = tuple[str, str, bool]  # name, type, repeated


def _f(name: str, type_: str, many: bool = False) -> Field:
    return (name, type_, many)


def _key(*extra: Field) -> list[Field]:
    return [_f("Id", S), *extra]


_ADDRESS = [_f("ContactPerson", S), _f("Line1", S), _f("Line2", S), _f("Line3", S), _f("City", S), _f("State", S),
            _f("PostalCode", S), _f("CountryRegion", S), _f("Phone1", "PhoneNumber"), _f("Fax", "PhoneNumber")]
_DATES = [_f("CreatedDate", D), _f("ModifiedDate", D)]

# The posting accounts of a customer and of a vendor card (``<name>GLAccountKey``), as the Customer and Vendor
# classes of the reference list them (Vendor:
# https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc533830(v=msdn.10)); the sandbox serves the
# ones the pairs read.
CUSTOMER_POSTING = ("Cash", "AccountsReceivable", "Sales")
VENDOR_POSTING = ("Cash", "AccountsPayable", "Purchases")

# name -> (base type or None, fields in sequence order)
TYPES: dict[str, tuple[str | None, list[Field]]] = {
    "OrganizationKey": (None, []),
    "CompanyKey": ("OrganizationKey", [_f("Id", I)]),
    "RoleKey": (None, _key()),
    "Context": (None, [_f("OrganizationKey", "OrganizationKey"), _f("CultureName", S), _f("CurrencyType", S),
                       _f("RoleKey", "RoleKey"), _f("TenantName", S), _f("WorkOnBehalfOf", S)]),
    "MoneyAmount": (None, [_f("Currency", S), _f("Value", DEC), _f("DecimalDigits", I)]),
    # a currency by its ISO code (https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc508472(v=msdn.10))
    "CurrencyKey": (None, [_f("ISOCode", S)]),
    "Quantity": (None, [_f("Value", DEC), _f("DecimalDigits", I)]),
    "PhoneNumber": (None, [_f("Value", S), _f("CountryCode", S), _f("Extension", S)]),
    "CreditLimit": (None, [_f("Item", S), _f("Amount", "MoneyAmount")]),
    "CustomerKey": (None, _key()), "VendorKey": (None, _key()), "CustomerClassKey": (None, _key()),
    "VendorClassKey": (None, _key()), "BatchKey": (None, _key()), "ItemKey": (None, _key()),
    "SalesDocumentKey": (None, _key()), "GLAccountNumberKey": (None, _key()), "PolicyKey": (None, _key()),
    "SalesDocumentTypeKey": (None, [_f("Type", S), _f("Id", S)]),
    "CustomerAddressKey": (None, _key(_f("CustomerKey", "CustomerKey"))),
    "VendorAddressKey": (None, _key(_f("VendorKey", "VendorKey"))),
    "GLTransactionKey": (None, [_f("JournalId", I), _f("Date", D)]),
    "PayablesDocumentKey": (None, _key()),
    # criteria restrictions
    "RestrictionOfNullableOfBoolean": (None, [_f("EqualValue", B), _f("NotEqualValue", B)]),
    "BetweenRestrictionOfString": (None, [_f("EqualValue", S), _f("NotEqualValue", S), _f("From", S), _f("To", S)]),
    "LikeRestrictionOfString": (None, [_f("EqualValue", S), _f("NotEqualValue", S), _f("From", S), _f("To", S),
                                       _f("Like", S)]),
    "BetweenRestrictionOfNullableOfDateTime": (None, [_f("EqualValue", D), _f("NotEqualValue", D), _f("From", D),
                                                      _f("To", D), _f("GreaterThan", D), _f("LessThan", D)]),
    "ArrayOfString": (None, [_f("string", S, True)]),
    "ListRestrictionOfNullableOfGLAccountType": (None, [_f("EqualValue", S), _f("Items", "ArrayOfString")]),
    "CustomerCriteria": (None, [_f("Id", "BetweenRestrictionOfString"), _f("Name", "LikeRestrictionOfString"),
                                _f("IsActive", "RestrictionOfNullableOfBoolean"),
                                _f("CreatedDate", "BetweenRestrictionOfNullableOfDateTime"),
                                _f("ModifiedDate", "BetweenRestrictionOfNullableOfDateTime")]),
    "VendorCriteria": (None, [_f("Id", "BetweenRestrictionOfString"), _f("Name", "LikeRestrictionOfString"),
                              _f("IsActive", "RestrictionOfNullableOfBoolean"),
                              _f("CreatedDate", "BetweenRestrictionOfNullableOfDateTime"),
                              _f("ModifiedDate", "BetweenRestrictionOfNullableOfDateTime")]),
    "ArrayOfPayablesTransactionState": (None, [_f("PayablesTransactionState", S, True)]),
    "ListRestrictionOfNullableOfPayablesTransactionState": (None, [_f("EqualValue", S),
                                                                   _f("Items", "ArrayOfPayablesTransactionState")]),
    "ArrayOfPayablesDocumentType": (None, [_f("PayablesDocumentType", S, True)]),
    "ListRestrictionOfNullableOfPayablesDocumentType": (None, [_f("EqualValue", S),
                                                               _f("Items", "ArrayOfPayablesDocumentType")]),
    # https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc508580(v=msdn.10) (GetPayablesDocumentList)
    "PayablesDocumentCriteria": (None, [_f("DocumentId", "LikeRestrictionOfString"),
                                        _f("Date", "BetweenRestrictionOfNullableOfDateTime"),
                                        _f("VendorId", "LikeRestrictionOfString"),
                                        _f("BatchId", "LikeRestrictionOfString"),
                                        _f("TransactionState", "ListRestrictionOfNullableOfPayablesTransactionState"),
                                        _f("ModifiedDate", "BetweenRestrictionOfNullableOfDateTime"),
                                        _f("Type", "ListRestrictionOfNullableOfPayablesDocumentType")]),
    "GLAccountCriteria": (None, [_f("AccountType", "ListRestrictionOfNullableOfGLAccountType")]),
    "GLTransactionCriteria": (None, [_f("TransactionDate", "BetweenRestrictionOfNullableOfDateTime"),
                                     _f("ModifiedDate", "BetweenRestrictionOfNullableOfDateTime")]),
    # customers
    "CustomerSummary": (None, [_f("Key", "CustomerKey"), _f("Name", S), _f("IsActive", B), _f("IsOnHold", B),
                               _f("CustomerClassKey", "CustomerClassKey"), _f("State", S), *_DATES]),
    "ArrayOfCustomerSummary": (None, [_f("CustomerSummary", "CustomerSummary", True)]),
    "CustomerAddress": (None, [_f("Key", "CustomerAddressKey"), *_ADDRESS]),
    "ArrayOfCustomerAddress": (None, [_f("CustomerAddress", "CustomerAddress", True)]),
    "Customer": (None, [_f("Key", "CustomerKey"), _f("Name", S), _f("ShortName", S), _f("StatementName", S),
                        _f("IsActive", B), _f("IsOnHold", B), _f("ClassKey", "CustomerClassKey"),
                        _f("CurrencyKey", S), _f("CreditLimit", "CreditLimit"), _f("Balance", "MoneyAmount"),
                        _f("Comment1", S), _f("Addresses", "ArrayOfCustomerAddress"),
                        _f("DefaultAddressKey", "CustomerAddressKey"), _f("BillToAddressKey", "CustomerAddressKey"),
                        _f("ShipToAddressKey", "CustomerAddressKey"),
                        *(_f(f"{name}GLAccountKey", "GLAccountNumberKey") for name in CUSTOMER_POSTING), *_DATES]),
    # vendors
    "VendorSummary": (None, [_f("Key", "VendorKey"), _f("Name", S), _f("IsActive", B), _f("IsOnHold", B),
                             _f("VendorClassKey", "VendorClassKey"), _f("State", S), *_DATES]),
    "ArrayOfVendorSummary": (None, [_f("VendorSummary", "VendorSummary", True)]),
    "VendorAddress": (None, [_f("Key", "VendorAddressKey"), *_ADDRESS]),
    "ArrayOfVendorAddress": (None, [_f("VendorAddress", "VendorAddress", True)]),
    "Vendor": (None, [_f("Key", "VendorKey"), _f("Name", S), _f("ShortName", S), _f("CheckName", S),
                      _f("IsActive", B), _f("IsOnHold", B), _f("ClassKey", "VendorClassKey"), _f("CurrencyKey", S),
                      _f("Comment1", S), _f("Addresses", "ArrayOfVendorAddress"),
                      _f("DefaultAddressKey", "VendorAddressKey"), _f("PurchaseAddressKey", "VendorAddressKey"),
                      _f("RemitToAddressKey", "VendorAddressKey"),
                      *(_f(f"{name}GLAccountKey", "GLAccountNumberKey") for name in VENDOR_POSTING), *_DATES]),
    # https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc533885(v=msdn.10)
    "PayablesDocumentSummary": (None, [_f("Key", "PayablesDocumentKey"), _f("VendorKey", "VendorKey"),
                                       _f("VendorName", S), _f("Date", D), _f("BatchKey", "BatchKey"),
                                       _f("CurrencyKey", "CurrencyKey"), _f("DocumentAmount", "MoneyAmount"),
                                       _f("ModifiedDate", D), _f("TransactionState", S), _f("Type", S)]),
    "ArrayOfPayablesDocumentSummary": (None, [_f("PayablesDocumentSummary", "PayablesDocumentSummary", True)]),
    # general ledger
    "GLAccountSummary": (None, [_f("Key", "GLAccountNumberKey"), _f("Alias", S), _f("IsActive", B),
                                _f("Description", S), _f("AccountType", S), *_DATES]),
    "ArrayOfGLAccountSummary": (None, [_f("GLAccountSummary", "GLAccountSummary", True)]),
    "GLTransactionSummary": (None, [_f("Key", "GLTransactionKey"), _f("BatchKey", "BatchKey"), _f("Reference", S),
                                    _f("TransactionDate", D), _f("TransactionState", S), _f("ModifiedDate", D)]),
    "ArrayOfGLTransactionSummary": (None, [_f("GLTransactionSummary", "GLTransactionSummary", True)]),
    "GLTransactionLine": (None, [_f("SequenceNumber", I), _f("GLAccountKey", "GLAccountNumberKey"),
                                 _f("DebitAmount", "MoneyAmount"), _f("CreditAmount", "MoneyAmount"),
                                 _f("Description", S)]),
    "ArrayOfGLTransactionLine": (None, [_f("GLTransactionLine", "GLTransactionLine", True)]),
    "GLTransaction": (None, [_f("Key", "GLTransactionKey"), _f("BatchKey", "BatchKey"), _f("Reference", S),
                             _f("TransactionDate", D), _f("TransactionState", S), _f("ModifiedDate", D),
                             _f("Lines", "ArrayOfGLTransactionLine")]),
    # sales orders
    "SalesOrderLine": (None, [_f("ItemKey", "ItemKey"), _f("ItemDescription", S), _f("Quantity", "Quantity"),
                              _f("UnitPrice", "MoneyAmount"), _f("TotalAmount", "MoneyAmount")]),
    "ArrayOfSalesOrderLine": (None, [_f("SalesOrderLine", "SalesOrderLine", True)]),
    "SalesOrder": (None, [_f("Key", "SalesDocumentKey"), _f("DocumentTypeKey", "SalesDocumentTypeKey"),
                          _f("CustomerKey", "CustomerKey"), _f("BatchKey", "BatchKey"), _f("Date", D),
                          _f("CustomerPONumber", S), _f("Comment", S), _f("CurrencyKey", "CurrencyKey"),
                          _f("Lines", "ArrayOfSalesOrderLine"),
                          _f("TotalAmount", "MoneyAmount"), *_DATES]),
    # sales quotes (CreateSalesQuote: lines need ItemKey, Quantity, QuantityToInvoice and QuantityToOrder,
    # https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc508629(v=msdn.10))
    "SalesQuoteLine": (None, [_f("ItemKey", "ItemKey"), _f("ItemDescription", S), _f("Quantity", "Quantity"),
                              _f("QuantityToInvoice", "Quantity"), _f("QuantityToOrder", "Quantity"),
                              _f("UnitPrice", "MoneyAmount"), _f("TotalAmount", "MoneyAmount")]),
    "ArrayOfSalesQuoteLine": (None, [_f("SalesQuoteLine", "SalesQuoteLine", True)]),
    "SalesQuote": (None, [_f("Key", "SalesDocumentKey"), _f("DocumentTypeKey", "SalesDocumentTypeKey"),
                          _f("CustomerKey", "CustomerKey"), _f("BatchKey", "BatchKey"), _f("Date", D),
                          _f("CustomerPONumber", S), _f("Comment", S), _f("CurrencyKey", "CurrencyKey"),
                          _f("Lines", "ArrayOfSalesQuoteLine"),
                          _f("TotalAmount", "MoneyAmount"), *_DATES]),
    "Policy": (None, [_f("Key", "PolicyKey"), _f("Name", S)]),
    "ValidationError": (None, [_f("Id", S), _f("Message", S)]),
    "ArrayOfValidationError": (None, [_f("ValidationError", "ValidationError", True)]),
    "ValidationResult": (None, [_f("Errors", "ArrayOfValidationError"), _f("Warnings", "ArrayOfValidationError")]),
}

# operation -> (parameters, result type or None)
OPERATIONS: dict[str, tuple[list[Field], str | None]] = {
    "GetCustomerList": ([_f("criteria", "CustomerCriteria"), _f("context", "Context")], "ArrayOfCustomerSummary"),
    "GetCustomerByKey": ([_f("key", "CustomerKey"), _f("context", "Context")], "Customer"),
    "GetVendorList": ([_f("criteria", "VendorCriteria"), _f("context", "Context")], "ArrayOfVendorSummary"),
    "GetVendorByKey": ([_f("key", "VendorKey"), _f("context", "Context")], "Vendor"),
    "GetPayablesDocumentList": ([_f("criteria", "PayablesDocumentCriteria"), _f("context", "Context")],
                                "ArrayOfPayablesDocumentSummary"),
    "GetGLAccountList": ([_f("criteria", "GLAccountCriteria"), _f("context", "Context")], "ArrayOfGLAccountSummary"),
    "GetGLTransactionList": ([_f("criteria", "GLTransactionCriteria"), _f("context", "Context")],
                             "ArrayOfGLTransactionSummary"),
    "GetGLTransactionByKey": ([_f("key", "GLTransactionKey"), _f("context", "Context")], "GLTransaction"),
    "GetSalesOrderByKey": ([_f("key", "SalesDocumentKey"), _f("context", "Context")], "SalesOrder"),
    "CreateSalesOrder": ([_f("salesOrder", "SalesOrder"), _f("context", "Context"), _f("policy", "Policy")], None),
    "GetSalesQuoteByKey": ([_f("key", "SalesDocumentKey"), _f("context", "Context")], "SalesQuote"),
    "CreateSalesQuote": ([_f("salesQuote", "SalesQuote"), _f("context", "Context"), _f("policy", "Policy")], None),
    "GetPolicyByOperation": ([_f("operation", S), _f("context", "Context")], "Policy"),
    "GetLoggedValidationResultByKey": ([_f("logId", S), _f("context", "Context")], "ValidationResult"),
}

SIMPLE = {S, B, D, I, DEC}


def soap_action(operation: str) -> str:
    """ASMX convention (namespace + operation); the legacy endpoint's real strings are unconfirmed."""
    return f"{NS}/{operation}"


def _xs(type_: str) -> str:
    return f"s:{type_}" if type_ in SIMPLE else f"tns:{type_}"


def _sequence(fields: list[Field]) -> str:
    rows = []
    for name, type_, many in fields:
        occurs = 'maxOccurs="unbounded"' if many else 'maxOccurs="1"'
        rows.append(f'<s:element minOccurs="0" {occurs} name="{name}" nillable="true" type="{_xs(type_)}"/>')
    return f"<s:sequence>{''.join(rows)}</s:sequence>"


def wsdl(address: str) -> str:
    """A document/literal WSDL 1.1 for the operations above, bound to SOAP 1.1 at ``address``."""
    types = []
    for name, (base, fields) in TYPES.items():
        if base:
            types.append(f'<s:complexType name="{name}"><s:complexContent><s:extension base="tns:{base}">'
                         f"{_sequence(fields)}</s:extension></s:complexContent></s:complexType>")
        else:
            types.append(f'<s:complexType name="{name}">{_sequence(fields)}</s:complexType>')
    elements, messages, port_ops, binding_ops = [], [], [], []
    for op, (params, result) in OPERATIONS.items():
        elements.append(f'<s:element name="{op}"><s:complexType>{_sequence(params)}</s:complexType></s:element>')
        out = [_f(f"{op}Result", result)] if result else []
        elements.append(f'<s:element name="{op}Response"><s:complexType>{_sequence(out)}</s:complexType></s:element>')
        messages.append(f'<wsdl:message name="{op}SoapIn"><wsdl:part name="parameters" element="tns:{op}"/>'
                        f'</wsdl:message><wsdl:message name="{op}SoapOut"><wsdl:part name="parameters" '
                        f'element="tns:{op}Response"/></wsdl:message>')
        port_ops.append(f'<wsdl:operation name="{op}"><wsdl:input message="tns:{op}SoapIn"/>'
                        f'<wsdl:output message="tns:{op}SoapOut"/></wsdl:operation>')
        binding_ops.append(f'<wsdl:operation name="{op}"><soap:operation soapAction="{soap_action(op)}" '
                           'style="document"/><wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output>'
                           '<soap:body use="literal"/></wsdl:output></wsdl:operation>')
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<wsdl:definitions xmlns:s="http://www.w3.org/2001/XMLSchema" '
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        f'xmlns:tns="{NS}" targetNamespace="{NS}">'
        f'<wsdl:types><s:schema elementFormDefault="qualified" targetNamespace="{NS}">'
        f"{''.join(types)}{''.join(elements)}</s:schema></wsdl:types>"
        f"{''.join(messages)}"
        f'<wsdl:portType name="DynamicsGPSoap">{"".join(port_ops)}</wsdl:portType>'
        '<wsdl:binding name="DynamicsGPSoap" type="tns:DynamicsGPSoap">'
        '<soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>'
        f'{"".join(binding_ops)}</wsdl:binding>'
        '<wsdl:service name="DynamicsGP"><wsdl:port name="DynamicsGPSoap" binding="tns:DynamicsGPSoap">'
        f'<soap:address location="{address}"/></wsdl:port></wsdl:service>'
        "</wsdl:definitions>"
    )


# -- serializing answers ------------------------------------------------------------------------------------------

def text_of(value: Any, type_: str) -> str:
    if type_ == B:
        return "true" if value else "false"
    if type_ == D:
        if isinstance(value, datetime):
            moment = value.astimezone(timezone.utc) if value.tzinfo else value
            return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond // 1000:03d}" if moment.microsecond
                                                           else "") + ("Z" if value.tzinfo else "")
        return str(value)
    if type_ == DEC:
        return format(Decimal(str(value)), "f")
    return str(value)


def append(parent: ET.Element, name: str, type_: str, value: Any) -> None:
    """``value`` (a dict for complex types, a list for repeated fields) as child ``name`` of ``parent``."""
    element = ET.SubElement(parent, f"{{{NS}}}{name}")
    if type_ in SIMPLE:
        element.text = text_of(value, type_)
        return
    base, fields = TYPES[type_]
    if isinstance(value, list) and type_.startswith("ArrayOf"):
        value = {fields[0][0]: value}  # the store keeps arrays as plain lists
    if base is not None:
        element.set(f"{{{XSI}}}type", type_)
        fields = TYPES[base][1] + fields
    for field_name, field_type, many in fields:
        child = value.get(field_name) if isinstance(value, Mapping) else None
        if child is None:
            continue
        for item in (child if many else [child]):
            append(element, field_name, field_type, item)


def envelope(body: ET.Element) -> bytes:
    ET.register_namespace("soap", SOAP_ENV)
    ET.register_namespace("", NS)
    ET.register_namespace("xsi", XSI)
    root = ET.Element(f"{{{SOAP_ENV}}}Envelope")
    ET.SubElement(root, f"{{{SOAP_ENV}}}Body").append(body)
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root)


def response(operation: str, result: Any) -> bytes:
    wrapper = ET.Element(f"{{{NS}}}{operation}Response")
    result_type = OPERATIONS[operation][1]
    if result_type is not None and result is not None:
        append(wrapper, f"{operation}Result", result_type, result)
    return envelope(wrapper)


def fault(code: str, message: str, detail: Mapping[str, Any] | None = None) -> bytes:
    """An ASMX-style SOAP 1.1 fault; ``detail`` becomes simple child elements of <detail>."""
    element = ET.Element(f"{{{SOAP_ENV}}}Fault")
    ET.SubElement(element, "faultcode").text = f"soap:{code}"
    ET.SubElement(element, "faultstring").text = message
    holder = ET.SubElement(element, "detail")
    for name, value in (detail or {}).items():
        if isinstance(value, list):
            parent = ET.SubElement(holder, f"{{{NS}}}{name}")
            for item in value:
                ET.SubElement(parent, f"{{{NS}}}string").text = str(item)
        else:
            ET.SubElement(holder, f"{{{NS}}}{name}").text = str(value)
    return envelope(element)


# -- reading requests ---------------------------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def to_data(element: ET.Element) -> Any:
    """An element as plain data: text for leaves, a dict of children (repeated names become lists)."""
    children = list(element)
    if not children:
        nil = element.get(f"{{{XSI}}}nil") == "true"
        return None if nil else (element.text or "")
    out: dict[str, Any] = {}
    for child in children:
        name = _local(child.tag)
        value = to_data(child)
        if name in out:
            out[name] = out[name] if isinstance(out[name], list) else [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out


def parse_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """(operation, its parameters as data) from a SOAP 1.1 envelope; ValueError when it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if _local(root.tag) != "Envelope":
        raise ValueError("not a SOAP envelope")
    soap_body = next((c for c in root if _local(c.tag) == "Body"), None)
    if soap_body is None or not len(soap_body):
        raise ValueError("the envelope has no Body")
    call = soap_body[0]
    data = to_data(call)
    return _local(call.tag), data if isinstance(data, dict) else {}
