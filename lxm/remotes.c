/* Placeholder: being written. */
#include "config.h"

#include "remotes.h"
