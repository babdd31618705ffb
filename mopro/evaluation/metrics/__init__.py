from .calibration import CalibratedAccuracy, calibration_error

__all__ = ['CalibratedAccuracy', 'calibration_error']
