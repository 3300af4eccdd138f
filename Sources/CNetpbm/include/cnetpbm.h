#pragma once
int cnetpbm_placeholder(void);
