// zlib: gzip decoding of IDX files and DEFLATE for PNG output.
#include <zlib.h>
