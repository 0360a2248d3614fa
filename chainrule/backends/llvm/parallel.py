"""The threads of a kernel: ``@<prefix>_parallel`` runs an outlined loop body on several threads
(``pthread_create`` from JIT code), for ``codegen.py``'s loops over many elements."""

# Run ``body`` over [0, extent) on ``threads`` threads: thread t gets chunk t and row t of partials.
# Chunks are multiples of ``granule``: for a 1-D loop, 64 elements (the vector loop's step, up to
# 16 float32 lanes x interleave 4), so every chunk but the last has no scalar remainder and each
# element is computed by the same code (libmvec, or libm in the remainder) whatever the threads.
RUNTIME = """%cr.task = type {{ ptr, ptr, i64, i64, ptr }}

declare i32 @pthread_create(ptr, ptr, ptr, ptr) nounwind
declare i32 @pthread_join(i64, ptr) nounwind

define internal ptr @{p}_task(ptr %task) {{
entry:
  %body = load ptr, ptr %task
  %table.p = getelementptr %cr.task, ptr %task, i32 0, i32 1
  %table = load ptr, ptr %table.p
  %start.p = getelementptr %cr.task, ptr %task, i32 0, i32 2
  %start = load i64, ptr %start.p
  %end.p = getelementptr %cr.task, ptr %task, i32 0, i32 3
  %end = load i64, ptr %end.p
  %partials.p = getelementptr %cr.task, ptr %task, i32 0, i32 4
  %partials = load ptr, ptr %partials.p
  call void %body(ptr %table, i64 %start, i64 %end, ptr %partials)
  ret ptr null
}}

define internal void @{p}_parallel(ptr %body, ptr %table, i64 %extent, ptr %partials, i64 %row_bytes, i64 %threads, i64 %granule) {{
entry:
  %tasks = alloca [{max_threads} x %cr.task], align 16
  %handles = alloca [{max_threads} x i64], align 16
  %started = alloca [{max_threads} x i1], align 16
  %spread = add i64 %extent, %threads
  %spread.1 = sub i64 %spread, 1
  %chunk.exact = udiv i64 %spread.1, %threads
  %granule.less = sub i64 %granule, 1
  %chunk.up = add i64 %chunk.exact, %granule.less
  %chunk.count = udiv i64 %chunk.up, %granule
  %chunk = mul i64 %chunk.count, %granule
  br label %fill
fill:
  %t = phi i64 [ 0, %entry ], [ %t.next, %filled ]
  %lo.raw = mul i64 %t, %chunk
  %lo.big = icmp ugt i64 %lo.raw, %extent
  %lo = select i1 %lo.big, i64 %extent, i64 %lo.raw
  %hi.raw = add i64 %lo, %chunk
  %hi.big = icmp ugt i64 %hi.raw, %extent
  %hi = select i1 %hi.big, i64 %extent, i64 %hi.raw
  %task = getelementptr [{max_threads} x %cr.task], ptr %tasks, i64 0, i64 %t
  store ptr %body, ptr %task
  %f1 = getelementptr %cr.task, ptr %task, i32 0, i32 1
  store ptr %table, ptr %f1
  %f2 = getelementptr %cr.task, ptr %task, i32 0, i32 2
  store i64 %lo, ptr %f2
  %f3 = getelementptr %cr.task, ptr %task, i32 0, i32 3
  store i64 %hi, ptr %f3
  %row = mul i64 %t, %row_bytes
  %mine = getelementptr i8, ptr %partials, i64 %row
  %f4 = getelementptr %cr.task, ptr %task, i32 0, i32 4
  store ptr %mine, ptr %f4
  %flag = getelementptr [{max_threads} x i1], ptr %started, i64 0, i64 %t
  store i1 false, ptr %flag
  %is.first = icmp eq i64 %t, 0
  br i1 %is.first, label %filled, label %spawn
spawn:
  %handle = getelementptr [{max_threads} x i64], ptr %handles, i64 0, i64 %t
  %rc = call i32 @pthread_create(ptr %handle, ptr null, ptr @{p}_task, ptr %task)
  %ok = icmp eq i32 %rc, 0
  store i1 %ok, ptr %flag
  br i1 %ok, label %filled, label %inline
inline:
  %ignored = call ptr @{p}_task(ptr %task)
  br label %filled
filled:
  %t.next = add i64 %t, 1
  %more = icmp ult i64 %t.next, %threads
  br i1 %more, label %fill, label %run.first
run.first:
  %first = getelementptr [{max_threads} x %cr.task], ptr %tasks, i64 0, i64 0
  %ignored.0 = call ptr @{p}_task(ptr %first)
  br label %join
join:
  %j = phi i64 [ 1, %run.first ], [ %j.next, %joined ]
  %join.more = icmp ult i64 %j, %threads
  br i1 %join.more, label %join.check, label %done
join.check:
  %was = getelementptr [{max_threads} x i1], ptr %started, i64 0, i64 %j
  %was.started = load i1, ptr %was
  br i1 %was.started, label %join.wait, label %joined
join.wait:
  %h.p = getelementptr [{max_threads} x i64], ptr %handles, i64 0, i64 %j
  %h = load i64, ptr %h.p
  %jrc = call i32 @pthread_join(i64 %h, ptr null)
  br label %joined
joined:
  %j.next = add i64 %j, 1
  br label %join
done:
  ret void
}}
"""
