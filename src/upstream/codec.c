#include "upstream/codec.h"

const upstream_codec *upstream_codec_for(llm_kind kind)
{
    switch (kind) {
    case LLM_KIND_OPENAI: return &openai_codec;
    case LLM_KIND_OLLAMA: break;
    }
    return &ollama_codec;
}
