/* The setjmp/longjmp runtime the LLVM wasm SjLj lowering calls into
 * (WebAssembly tool-conventions, SetjmpLongjmp.md). Neither Debian's wasi-libc
 * nor Rust's bundled one provides it.
 *
 * Must be compiled with -mexception-handling but WITHOUT -wasm-enable-sjlj.
 * The C-longjmp tag is defined here: left undefined, rustc's --allow-undefined
 * would turn it into a tag import, and real Envoy aborts on any tag import/export. */
#include <setjmp.h>

struct plw_jmp_buf {
  void *func_invocation_id;
  unsigned int label;
  struct {
    void *env;
    int val;
  } arg;
};

__asm__(".globl __c_longjmp\n"
        ".tagtype __c_longjmp i32\n"
        "__c_longjmp:\n");

void __wasm_setjmp(void *env, unsigned int label, void *func_invocation_id) {
  struct plw_jmp_buf *jb = env;
  jb->func_invocation_id = func_invocation_id;
  jb->label = label;
}

unsigned int __wasm_setjmp_test(void *env, void *func_invocation_id) {
  struct plw_jmp_buf *jb = env;
  if (jb->func_invocation_id == func_invocation_id) {
    return jb->label;
  }
  return 0;
}

_Noreturn void __wasm_longjmp(void *env, int val) {
  struct plw_jmp_buf *jb = env;
  /* setjmp returns 1 when longjmp is called with 0 (C11 7.13.2.1). */
  jb->arg.env = env;
  jb->arg.val = val != 0 ? val : 1;
  __builtin_wasm_throw(1, &jb->arg);
}
