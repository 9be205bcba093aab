"""ml-connector: keeps ERP systems and sales/billing systems in agreement."""

__version__ = "0.1.0"
