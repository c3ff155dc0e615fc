"""lesionvol: necrotic and residual lesion volume of the femoral head on serial MRI."""

__version__ = "0.1.0"
