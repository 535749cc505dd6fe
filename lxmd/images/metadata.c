/* Placeholder: being written. */
#include "config.h"

#include "images/metadata.h"
