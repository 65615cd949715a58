/* Generated placeholder (no model trained yet): make guard-train overwrites this file. */
#include "guard/guard_int.h"

const int16_t guard_model_weights[GUARD_DIM] = {0};
const float guard_model_scale = 0.0f;
const float guard_model_bias = -4.0f;
const float guard_model_threshold_query = 0.5f;
const float guard_model_threshold_chunk = 0.5f;
