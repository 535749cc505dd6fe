/* The CLI's remotes: being written. */
#pragma once

int lxm_remotes_placeholder(void);
