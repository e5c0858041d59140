// stb_image's decoders compiled into fuzz_image_folder from the system header, the same version
// as the libstb the library links: the executable's definitions take the place of libstb's, so
// the decoders run with AddressSanitizer, array-bounds checks and coverage feedback (the shared
// library is not instrumented, so the fuzzer could neither see inside it nor catch its
// out-of-bounds accesses). stb_image's other undefined behaviour (shifts of negative numbers
// and the like) is not checked: it is not ours to fix. See CMakeLists.txt for the flags.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
