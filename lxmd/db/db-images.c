/* Placeholder: being written. */
#include "config.h"

#include "db/db.h"
