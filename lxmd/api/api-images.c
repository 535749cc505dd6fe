/* Placeholder: being written. */
#include "config.h"

#include "api.h"
