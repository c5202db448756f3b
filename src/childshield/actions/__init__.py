"""Actions: what matches lead to (a decision by the banks' policies), recorded, and told to platforms."""
