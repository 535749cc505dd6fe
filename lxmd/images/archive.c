/* Placeholder: being written. */
#include "config.h"

#include "images/archive.h"
