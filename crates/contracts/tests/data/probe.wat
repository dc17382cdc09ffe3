;; A test contract that exercises the host interface. Its message is a JSON string whose first
;; character (the message's second byte) names what to do; see the tests.
(module
  (import "env" "env" (func $env (result i32)))
  (import "env" "register_read" (func $register_read (param i32)))
  (import "env" "db_read" (func $db_read (param i32 i32) (result i32)))
  (import "env" "db_write" (func $db_write (param i32 i32 i32 i32)))
  (import "env" "db_remove" (func $db_remove (param i32 i32)))
  (import "env" "db_next" (func $db_next (param i32 i32) (result i32)))
  (import "env" "emit_event" (func $emit_event (param i32 i32)))
  (import "env" "set_result" (func $set_result (param i32 i32)))
  (import "env" "query_chain" (func $query_chain (param i32 i32) (result i32)))
  (import "env" "abort" (func $abort (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 0) "k")                               ;; key "k" at 0
  (data (i32.const 16) "denied")                         ;; 6 bytes at 16
  (data (i32.const 32) "{\"kind\":\"probe\"}")           ;; 16 bytes at 32
  (data (i32.const 64) "{\"organisation\":{\"id\":\"a\"}}") ;; 27 bytes at 64
  (data (i32.const 128) "no")                            ;; 2 bytes at 128
  (data (i32.const 136) "m")                             ;; key "m" at 136
  (data (i32.const 144) "{\"nope\":1}")                  ;; 10 bytes at 144
  (func (export "allocate") (param $len i32) (result i32)
    (local $ptr i32)
    global.get $heap
    local.set $ptr
    global.get $heap
    local.get $len
    i32.add
    global.set $heap
    local.get $ptr)
  ;; Answers the register's content, or an empty answer if the last call returned -1.
  (func $answer_register (param $len i32)
    (if (i32.ge_s (local.get $len) (i32.const 0))
      (then
        (call $register_read (i32.const 2048))
        (call $set_result (i32.const 2048) (local.get $len)))))
  (func $run (param $ptr i32) (param $len i32) (result i32)
    (local $op i32)
    (local.set $op (i32.load8_u (i32.add (local.get $ptr) (i32.const 1))))
    ;; w: k := the message
    (if (i32.eq (local.get $op) (i32.const 119))
      (then (call $db_write (i32.const 0) (i32.const 1) (local.get $ptr) (local.get $len))
            (return (i32.const 0))))
    ;; M: m := the message
    (if (i32.eq (local.get $op) (i32.const 77))
      (then (call $db_write (i32.const 136) (i32.const 1) (local.get $ptr) (local.get $len))
            (return (i32.const 0))))
    ;; r: answer k
    (if (i32.eq (local.get $op) (i32.const 114))
      (then (call $answer_register (call $db_read (i32.const 0) (i32.const 1)))
            (return (i32.const 0))))
    ;; d: remove k
    (if (i32.eq (local.get $op) (i32.const 100))
      (then (call $db_remove (i32.const 0) (i32.const 1))
            (return (i32.const 0))))
    ;; n: answer the first key
    (if (i32.eq (local.get $op) (i32.const 110))
      (then (call $answer_register (call $db_next (i32.const 0) (i32.const 0)))
            (return (i32.const 0))))
    ;; N: answer the key after k
    (if (i32.eq (local.get $op) (i32.const 78))
      (then (call $answer_register (call $db_next (i32.const 0) (i32.const 1)))
            (return (i32.const 0))))
    ;; v: answer the environment
    (if (i32.eq (local.get $op) (i32.const 118))
      (then (call $answer_register (call $env))
            (return (i32.const 0))))
    ;; q: answer a chain query; Q: a malformed one
    (if (i32.eq (local.get $op) (i32.const 113))
      (then (call $answer_register (call $query_chain (i32.const 64) (i32.const 27)))
            (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 81))
      (then (call $answer_register (call $query_chain (i32.const 144) (i32.const 10)))
            (return (i32.const 0))))
    ;; e: emit an event
    (if (i32.eq (local.get $op) (i32.const 101))
      (then (call $emit_event (i32.const 32) (i32.const 16))
            (return (i32.const 0))))
    ;; x: refuse with a reason
    (if (i32.eq (local.get $op) (i32.const 120))
      (then (call $set_result (i32.const 16) (i32.const 6))
            (return (i32.const 1))))
    ;; l: loop for ever
    (if (i32.eq (local.get $op) (i32.const 108))
      (then (loop $forever (br $forever))))
    ;; t: trap
    (if (i32.eq (local.get $op) (i32.const 116))
      (then unreachable))
    ;; g: write k, then trap
    (if (i32.eq (local.get $op) (i32.const 103))
      (then (call $db_write (i32.const 0) (i32.const 1) (local.get $ptr) (local.get $len))
            unreachable))
    ;; a: abort
    (if (i32.eq (local.get $op) (i32.const 97))
      (then (call $abort (i32.const 128) (i32.const 2))))
    ;; o: write from outside memory
    (if (i32.eq (local.get $op) (i32.const 111))
      (then (call $db_write (i32.const 0) (i32.const 1) (i32.const 0x7ffffff0) (i32.const 8))
            (return (i32.const 0))))
    ;; p: grow memory by 100 pages; answer "1" if it grew
    (if (i32.eq (local.get $op) (i32.const 112))
      (then (if (i32.ge_s (memory.grow (i32.const 100)) (i32.const 0))
              (then (call $set_result (i32.const 0) (i32.const 1))))
            (return (i32.const 0))))
    ;; b: recurse without end
    (if (i32.eq (local.get $op) (i32.const 98))
      (then (return (call $run (local.get $ptr) (local.get $len)))))
    (i32.const 0))
  (func (export "instantiate") (param i32 i32) (result i32)
    (call $run (local.get 0) (local.get 1)))
  (func (export "execute") (param i32 i32) (result i32)
    (call $run (local.get 0) (local.get 1)))
  (func (export "query") (param i32 i32) (result i32)
    (call $run (local.get 0) (local.get 1)))
  (func (export "migrate") (param i32 i32) (result i32)
    (call $run (local.get 0) (local.get 1))))
