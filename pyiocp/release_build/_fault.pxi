# The release build's _fault.pxi (setup.py puts this folder on Cython's
# include path): no injection points, nothing to drive them.  A fault build
# includes pyiocp/fault_build/_fault.pxi instead.
_FAULT_INJECTION = False
