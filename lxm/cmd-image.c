/* Placeholder: being written. */
#include "config.h"

#include "commands.h"
