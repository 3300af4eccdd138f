#include "cnetpbm.h"
int cnetpbm_placeholder(void) { return 0; }
