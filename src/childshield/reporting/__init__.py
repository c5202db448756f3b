"""Reports to clearinghouses (NCMEC's CyberTipline first): building, validating and, later, sending them."""
