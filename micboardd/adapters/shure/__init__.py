"""Shure adapters: the 2202 command-string family (ULX-D, QLX-D, SLX-D, Axient Digital, PSM1000) and UHF-R."""
