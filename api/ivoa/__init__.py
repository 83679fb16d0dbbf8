"""IVOA protocols under /ivoa/: TAP with ADQL, ObsCore, Simple Cone Search, SIAv2, VOSI."""
