"""What the machine offers: the device, the memory budget, process-wide allocator settings."""
