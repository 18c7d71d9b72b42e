"""The transfer engine: copy one object (zero-byte, single PUT or multipart), resume, verify."""
