"""The vendor's workstation: its home (keys, config, store), the registry of customers and
the licences it issued, and (issue 11) every customer's imported exports."""
