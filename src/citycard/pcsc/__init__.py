"""PC/SC adapters: real readers through pyscard and the vsmartcard vpcd bridge for emulated cards."""
