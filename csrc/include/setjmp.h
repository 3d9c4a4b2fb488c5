/* setjmp/longjmp for wasm32 with the Wasm exception-handling proposal.
 * Debian's wasi-libc ships no setjmp.h; clang lowers setjmp/longjmp calls
 * (-mllvm -wasm-enable-sjlj) into calls to the runtime in csrc/setjmp.c,
 * following the WebAssembly tool-conventions "SetjmpLongjmp" ABI. */
#ifndef PLW_SETJMP_H
#define PLW_SETJMP_H

typedef struct {
  void *func_invocation_id;
  unsigned int label;
  struct {
    void *env;
    int val;
  } arg;
} jmp_buf[1];

int setjmp(jmp_buf env) __attribute__((returns_twice));
_Noreturn void longjmp(jmp_buf env, int val);

#define _setjmp setjmp
#define _longjmp longjmp
#define sigjmp_buf jmp_buf
#define sigsetjmp(env, save) setjmp(env)
#define siglongjmp longjmp

#endif
