/* Placeholder: being written. */
#include "config.h"

#include "simplestreams.h"
