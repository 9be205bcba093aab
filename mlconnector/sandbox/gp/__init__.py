"""Emulator of Dynamics GP Web Services, legacy endpoint (SOAP 1.1, Windows authentication), and of the
Service Based Architecture (REST) routes for customers and vendors: see ``sba.py`` for what of SBA is
documented and what is this sandbox's assumption (the JSON body above all).

``create_app(delay=, max_concurrent=, overflow=, modified_precision=, schemes=, allow_basic=, faults=)``; the
server and its helpers are ``app.state.gp`` (a ``GPSandbox``: ``add_user``, ``seed_demo``, ``add_customer``,
``add_vendor``, ``add_gl_account``, ``add_gl_transaction``, ``add_item``, ``modify``, ``sales_orders``).

Served::

    GET  /DynamicsGPWebServices/DynamicsGPService.asmx?wsdl   the WSDL (document/literal, SOAP 1.1)
    POST /DynamicsGPWebServices/DynamicsGPService.asmx        GetCustomerList, GetCustomerByKey, GetVendorList,
         GetVendorByKey, GetGLAccountList, GetGLTransactionList, GetGLTransactionByKey, GetSalesOrderByKey,
         CreateSalesOrder (needs the policy from GetPolicyByOperation), GetPolicyByOperation,
         GetLoggedValidationResultByKey
    GET  /GPService/Tenants(DefaultTenant)/help, .../Companies(Fabrikam%2C%20Inc.)/Sales/Customers[(id)],
         .../Purchasing/Vendors[(id)]   (SBA; ``sba_tenant=``, ``sba_list_key=``, ``sba_rename=``)

Every request needs Windows authentication: without it the answer is 401 with ``WWW-Authenticate: Negotiate``
and ``WWW-Authenticate: NTLM``; the NTLM (or SPNEGO-wrapped NTLM) handshake is verified by pyspnego's acceptor
against the accounts given to ``add_user``, so a wrong password fails. An authenticated account that is not
mapped to a GP user (``add_user(..., gp_user=None)``) or lacks the context's company gets an access-denied
fault. Requests beyond ``max_concurrent`` are answered 503 "Server Too Busy" with Retry-After (or wait, with
``overflow="queue"``); ``delay`` seconds are added to every operation. ``Faults``: ``429=`` shares become
that 503, ``5xx=`` a system-exception fault, ``latency=`` more delay.

What is this sandbox's own choice, because the material could not confirm GP's behaviour
(../shared/api/gp_zuora.md, "What could not be confirmed"):

* The legacy endpoint's WSDL was not available: the WSDL served here is built from Microsoft's class reference
  (type and property names) but its element order, the subset of properties, the SOAPAction strings
  (``http://schemas.microsoft.com/dynamics/gp/2006/01/{Operation}``, the ASMX convention) and the WSDL URL
  (``?wsdl``) are assumptions. The connector reads whatever WSDL the server serves, so a real server's
  differences in these matter less than in a hand-built client.
* ``Customer.Balance`` (a MoneyAmount) is an assumption: Microsoft's Customer reference page did not show it.
  Address ``Phone1`` is a PhoneNumber with ``Value``; GP's 14-digit phone format is not interpreted.
* ``ModifiedDate`` is a date by default, as GP keeps card modification dates: the server's local day
  (``server_zone``, UTC unless set), at midnight, read as UTC; with ``modified_precision="datetime"`` it
  carries the time. Which the real service returns is unconfirmed.
  Between restrictions treat ``From`` and ``To`` as inclusive; a value without a time is refused.
* SOAP faults: HTTP 500, ``soap:Client`` for validation errors and ``soap:Server`` otherwise, with
  ``<detail>`` holding ``ExceptionType`` and ``LogId``; the fault strings are invented (GP's exact fault XML
  is unconfirmed). The validation messages themselves come from ``GetLoggedValidationResultByKey(logId)``.
* The access-denied fault for an unmapped account is invented in wording and shape (SecurityException).
* ``CreateSalesOrder`` checks the policy key against the one ``GetPolicyByOperation`` issued, requires
  DocumentTypeKey, CustomerKey, BatchKey and lines with an existing ItemKey and a Quantity, numbers orders
  without a Key (``ORDST2230``...), and refuses an order number that exists. Batches need not exist. A CurrencyKey
  is kept by its ISOCode (three letters, else GP's "An ISO 4217 currency code must have three characters"); whether
  the company has that currency set up is not checked.
* Requests without authentication get 401 on every URL, the WSDL included. Served over sockets
  (``mlconnector sandbox serve``), an NTLM handshake authenticates the connection, as IIS does, until it has been
  idle 120 s; in-process, where there are no connections, it authenticates one request.
* ``Basic`` is accepted only with ``allow_basic=True``.
"""

from .app import SERVICE_PATH, create_app
from .sandbox import SAMPLE_COMPANY, GPSandbox

__all__ = ["create_app", "GPSandbox", "SERVICE_PATH", "SAMPLE_COMPANY"]
