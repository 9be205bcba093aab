"""Writes tests/cassettes/dynamics/*.yaml from Microsoft's documented example responses (../shared/api/dynamics.md:
Entra token success and error samples, the companies sample, the customer and posted-invoice samples).

Run from the repository root: python tests/cassettes/dynamics/make_cassettes.py
"""
import json
from pathlib import Path

import yaml

TENANT = "contoso.onmicrosoft.com"
ROOT = f"https://api.businesscentral.dynamics.com/v2.0/{TENANT}/production/api/v2.0"
COMPANY_ID = "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1"
TOKEN_URI = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
TOKEN_BODY = ("grant_type=client_credentials&client_id=0b7c8f0e-1111-2222-3333-444455556666&client_secret=FILTERED"
              "&scope=https%3A%2F%2Fapi.businesscentral.dynamics.com%2F.default")
TOKEN = {"token_type": "Bearer", "expires_in": 3599, "access_token": "REDACTED"}
TOKEN_ERROR = {"error": "invalid_scope",
               "error_description": "AADSTS70011: The provided value for the input parameter 'scope' is not valid. "
                                    "The scope https://api.businesscentral.dynamics.com/ is not valid.",
               "error_codes": [70011], "timestamp": "2026-01-05 09:00:00Z",
               "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
               "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7"}
COMPANIES = {"@odata.context": f"{ROOT}/$metadata#companies",
             "value": [{"id": COMPANY_ID, "systemVersion": "18453", "name": "CRONUS USA, Inc.",
                        "displayName": "CRONUS USA, Inc.", "businessProfileId": ""}]}
ETAG = "W/\"JzQ0OzZXc0ZDVjlUYjBOTDNOYmMvbjdTSTNpRWlhVjVXbmRBUzltakJOYmFlTU09MTswMDsn\""
CUSTOMER = {
    "@odata.etag": ETAG, "id": "f2a5738a-44e3-ea11-bb43-000d3a2feca1", "number": "10000",
    "displayName": "Adatum Corporation", "type": "Company", "addressLine1": "192 Market Square", "addressLine2": "",
    "city": "Atlanta", "state": "GA", "country": "US", "postalCode": "31772", "phoneNumber": "",
    "email": "robert.townes@contoso.com", "website": "", "taxLiable": True,
    "taxAreaId": "90196a90-44e3-ea11-bb43-000d3a2feca1", "taxAreaDisplayName": "ATLANTA, GA",
    "taxRegistrationNumber": "", "currencyId": "00000000-0000-0000-0000-000000000000", "currencyCode": "USD",
    "paymentTermsId": "04a5738a-44e3-ea11-bb43-000d3a2feca1",
    "shipmentMethodId": "00000000-0000-0000-0000-000000000000",
    "paymentMethodId": "3b196a90-44e3-ea11-bb43-000d3a2feca1", "blocked": " ",
    "lastModifiedDateTime": "2020-08-21T07:38:44.293Z"}
_ADDRESS = {f"{p}{k}": v for p in ("sellTo", "billTo", "shipTo") for k, v in (
    ("AddressLine1", "153 Thomas Drive"), ("AddressLine2", ""), ("City", "Chicago"), ("Country", "US"),
    ("State", "IL"), ("PostCode", "61236"))}
INVOICE = {
    "@odata.context": f"{ROOT}/$metadata#companies({COMPANY_ID})/salesInvoices/$entity", "@odata.etag": ETAG,
    "id": "9e0f5c9c-44e3-ea11-bb43-000d3a2feca1", "number": "PS-INV103001", "externalDocumentNumber": "",
    "invoiceDate": "2019-01-15", "postingDate": "2019-01-15", "dueDate": "2019-01-15",
    "customerPurchaseOrderReference": "", "customerId": "f3a5738a-44e3-ea11-bb43-000d3a2feca1",
    "customerNumber": "20000", "customerName": "Trey Research", "billToName": "Trey Research",
    "billToCustomerId": "f3a5738a-44e3-ea11-bb43-000d3a2feca1", "billToCustomerNumber": "20000",
    "shipToName": "Trey Research", "shipToContact": "Helen Ray", **_ADDRESS,
    "currencyId": "00000000-0000-0000-0000-000000000000", "currencyCode": "USD",
    "orderId": "00000000-0000-0000-0000-000000000000", "orderNumber": "",
    "paymentTermsId": "0ba5738a-44e3-ea11-bb43-000d3a2feca1",
    "shipmentMethodId": "00000000-0000-0000-0000-000000000000", "salesperson": "PS", "pricesIncludeTax": False,
    "remainingAmount": 0, "discountAmount": 0, "discountAppliedBeforeTax": True, "totalAmountExcludingTax": 164.7,
    "totalTaxAmount": 8.24, "totalAmountIncludingTax": 172.94, "status": "Paid",
    "lastModifiedDateTime": "2020-08-21T00:25:58.337Z", "phoneNumber": "", "email": "helen.ray@contoso.com",
    "salesInvoiceLines": [{
        "@odata.etag": ETAG, "id": "238cb9c0-44e3-ea11-bb43-000d3a2feca1",
        "documentId": "9e0f5c9c-44e3-ea11-bb43-000d3a2feca1", "sequence": 10000,
        "itemId": "02a6738a-44e3-ea11-bb43-000d3a2feca1", "accountId": "00000000-0000-0000-0000-000000000000",
        "lineType": "Item", "lineObjectNumber": "1928-S", "description": "AMSTERDAM Lamp",
        "unitOfMeasureId": "5ca6738a-44e3-ea11-bb43-000d3a2feca1", "unitOfMeasureCode": "PCS", "unitPrice": 54.9,
        "quantity": 3, "discountAmount": 0, "discountPercent": 0, "discountAppliedBeforeTax": False,
        "amountExcludingTax": 164.7, "taxCode": "FURNITURE", "taxPercent": 5, "totalTaxAmount": 8.24,
        "amountIncludingTax": 172.94, "invoiceDiscountAllocation": 0, "netAmount": 164.7, "netTaxAmount": 8.24,
        "netAmountIncludingTax": 172.94, "shipmentDate": "2020-08-21",
        "itemVariantId": "00000000-0000-0000-0000-000000000000"}]}
CUSTOMERS_URI = f"{ROOT}/companies({COMPANY_ID})/customers"
CHANGES_QUERY = "?%24orderby=lastModifiedDateTime%2Cid"
NEXT = f"{CUSTOMERS_URI}?$orderby=lastModifiedDateTime,id&$skiptoken='10000'"


def interaction(uri, method, response, status=200, body=None, message="OK", api=True):
    return {"request": {"body": body, "headers": {"Authorization": ["FILTERED"]} if api else {},
                        "method": method, "uri": uri},
            "response": {"status": {"code": status, "message": message},
                         "headers": {"content-type": ["application/json; odata.metadata=minimal"],
                                     "odata-version": ["4.0"]},
                         "body": {"string": json.dumps(response)}}}


def token(status=200, body=TOKEN):
    return interaction(TOKEN_URI, "POST", body, status=status, body=TOKEN_BODY, api=False,
                       message="OK" if status == 200 else "Bad Request")


def companies():
    return interaction(f"{ROOT}/companies", "GET", COMPANIES)


CASSETTES = {
    "ping_cloud.yaml": [token(), companies(),
                        interaction(CUSTOMERS_URI, "GET", {"value": [CUSTOMER]}),
                        interaction(f"{ROOT}/companies({COMPANY_ID})/items", "GET", {"value": []})],
    "token_invalid_scope.yaml": [token(400, TOKEN_ERROR)],
    "posted_invoice_get.yaml": [token(), companies(), interaction(
        f"{ROOT}/companies({COMPANY_ID})/salesInvoices(9e0f5c9c-44e3-ea11-bb43-000d3a2feca1)"
        "?%24expand=salesInvoiceLines", "GET", INVOICE)],
    "customers_changes_nextlink.yaml": [token(), companies(), interaction(
        CUSTOMERS_URI + CHANGES_QUERY, "GET", {"@odata.context": f"{ROOT}/$metadata#companies({COMPANY_ID})/customers",
                                               "value": [CUSTOMER], "@odata.nextLink": NEXT}),
        interaction(NEXT, "GET", {"value": []})],
}

if __name__ == "__main__":
    here = Path(__file__).parent
    for name, interactions in CASSETTES.items():
        text = yaml.safe_dump({"interactions": interactions, "version": 1}, sort_keys=False, width=120)
        (here / name).write_text("# Microsoft's documented example responses (see shared/api/dynamics.md); "
                                 "tokens and secrets filtered.\n" + text, encoding="utf-8")
