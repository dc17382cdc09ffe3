;; A test contract that hands its message to the host: a message {"contract": ..., "msg": ...}
;; is a call of another contract (answered with what the call put in the register), and a
;; message {"symbol": ...} is a token transfer out of its own account.
(module
  (import "env" "register_read" (func $register_read (param i32)))
  (import "env" "set_result" (func $set_result (param i32 i32)))
  (import "env" "call_contract" (func $call_contract (param i32 i32) (result i32)))
  (import "env" "transfer" (func $transfer (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 16384))
  (func (export "allocate") (param $len i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (local.get $ptr))
  (func $run (param $ptr i32) (param $len i32) (result i32)
    (local $n i32)
    ;; {"c... : a call
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 2))) (i32.const 99))
      (then
        (local.set $n (call $call_contract (local.get $ptr) (local.get $len)))
        (call $register_read (i32.const 1024))
        (call $set_result (i32.const 1024) (local.get $n))
        (return (i32.const 0))))
    ;; {"s... : a transfer
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 2))) (i32.const 115))
      (then (call $transfer (local.get $ptr) (local.get $len))))
    (i32.const 0))
  (func (export "instantiate") (param i32 i32) (result i32) (i32.const 0))
  (func (export "execute") (param i32 i32) (result i32) (call $run (local.get 0) (local.get 1)))
  (func (export "query") (param i32 i32) (result i32) (call $run (local.get 0) (local.get 1))))
