/* The Cython API's former header name, kept for one release: new code includes cywhip/capi.h. */
#include "cywhip/capi.h"
