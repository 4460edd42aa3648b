"""The POS terminal and bus validator application over the kernel: journal, receipts, upload queue."""
