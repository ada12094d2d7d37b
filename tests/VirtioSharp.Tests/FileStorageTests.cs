using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;
using VirtioSharp.Storage;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;
using static VirtioSharp.Tests.Support.StorageRig;

namespace VirtioSharp.Tests;

/// <summary>
/// FileStorage semantics, each in every aio mode: holes from DISCARD and WRITE_ZEROES+UNMAP (SEEK_HOLE), ZERO_RANGE
/// keeping blocks, the zero-writing fallback on tmpfs, O_DIRECT bouncing, FUA/writethrough/unsafe flush rules, many
/// requests in flight, the io_uring fallback, a file shrunk underneath, read-only refusal, dispose with I/O in flight.
/// Files live on ext4 (/var/tmp) or tmpfs (/dev/shm), checked by the first test.
/// </summary>
public unsafe class FileStorageTests
{
    public static TheoryData<FileAioMode> AioModes() => [FileAioMode.IoUring, FileAioMode.Threads, FileAioMode.Sync];

    private const int MiB = 1 << 20;

    [Fact]
    public void FileStorage_test_directories_are_ext4_and_tmpfs()
    {
        // The semantics below depend on the file system (punching, ZERO_RANGE, O_DIRECT): say which one a failure ran on.
        static string Fs(string dir) => File.ReadAllLines("/proc/mounts").Select(l => l.Split(' '))
            .Where(f => dir.StartsWith(f[1], StringComparison.Ordinal)).OrderByDescending(f => f[1].Length).First()[2];
        Assert.Equal("ext4", Fs(Ext4Dir));
        Assert.Equal("tmpfs", Fs(TmpfsDir));
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_discard_punches_a_hole_seen_by_SEEK_HOLE(FileAioMode aio)
    {
        string path = NewFile(Ext4Dir, MiB, fill: 0xAB);
        try
        {
            using var s = Open(path, aio);
            Assert.True(s.Info.SupportsDiscard);
            using var q = s.OpenQueue(0, 8);
            Assert.False(IsHole(path, 256 * 1024, 256 * 1024));
            long before = Allocated(path);
            Assert.Equal(0, Run(q, Range(BlockOp.Discard, 256 * 1024, 256 * 1024, 7)));
            Assert.True(IsHole(path, 256 * 1024, 256 * 1024));
            // SEEK_HOLE alone would also accept ZERO_RANGE (ext4 reports unwritten extents as holes): the blocks must go.
            Assert.True(Allocated(path) <= before - 256 * 1024, $"{before} -> {Allocated(path)} bytes allocated");
            Assert.All(Read(q, 256 * 1024, 256 * 1024), b => Assert.Equal(0, b));
            Assert.All(Read(q, 0, 256 * 1024), b => Assert.Equal(0xAB, b));   // around the hole: untouched
            Assert.All(Read(q, 512 * 1024, 512 * 1024), b => Assert.Equal(0xAB, b));
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_write_zeroes_with_unmap_punches_a_hole(FileAioMode aio)
    {
        string path = NewFile(Ext4Dir, MiB, fill: 0xCD);
        try
        {
            using var s = Open(path, aio);
            Assert.True(s.Info.WriteZeroesMayUnmap);
            using var q = s.OpenQueue(0, 8);
            long before = Allocated(path);
            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 0, 128 * 1024, 3, BlockRequestFlags.Unmap)));
            Assert.True(IsHole(path, 0, 128 * 1024));
            Assert.True(Allocated(path) <= before - 128 * 1024, $"{before} -> {Allocated(path)} bytes allocated");
            Assert.All(Read(q, 0, 128 * 1024), b => Assert.Equal(0, b));
            Assert.All(Read(q, 128 * 1024, 4096), b => Assert.Equal(0xCD, b));
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_write_zeroes_without_unmap_reads_zeros_and_keeps_the_blocks(FileAioMode aio)
    {
        // §5.2.6.2: without VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP the range must stay allocated (ZERO_RANGE, not a punch).
        string path = NewFile(Ext4Dir, MiB, fill: 0x11);
        try
        {
            using var s = Open(path, aio);
            using var q = s.OpenQueue(0, 8);
            long before = Allocated(path);
            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 64 * 1024, 512 * 1024, 4)));
            Assert.All(Read(q, 64 * 1024, 512 * 1024), b => Assert.Equal(0, b));
            Assert.All(Read(q, 0, 64 * 1024), b => Assert.Equal(0x11, b));
            Assert.Equal(before, Allocated(path));
            Assert.Equal(0, s.Stats.ZeroWriteFallbacks);   // ext4 has ZERO_RANGE
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_write_zeroes_writes_zeros_where_the_file_system_refuses_zero_range(FileAioMode aio)
    {
        string path = NewFile(TmpfsDir, MiB, fill: 0x77);   // tmpfs: fallocate(ZERO_RANGE) is EOPNOTSUPP
        try
        {
            using var s = Open(path, aio);
            using var q = s.OpenQueue(0, 8);
            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 4096, 300 * 1024, 5)));
            Assert.All(Read(q, 4096, 300 * 1024), b => Assert.Equal(0, b));
            Assert.All(Read(q, 0, 4096), b => Assert.Equal(0x77, b));
            Assert.All(Read(q, 4096 + 300 * 1024, 4096), b => Assert.Equal(0x77, b));
            Assert.Equal(1, s.Stats.ZeroWriteFallbacks);
            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 0, 4096, 6)));   // remembered: straight to zeros
            Assert.Equal(2, s.Stats.ZeroWriteFallbacks);
            Assert.False(IsHole(path, 0, 4096));
            // With UNMAP tmpfs can punch: a hole, no fallback.
            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 512 * 1024, 64 * 1024, 8, BlockRequestFlags.Unmap)));
            Assert.True(IsHole(path, 512 * 1024, 64 * 1024));
            Assert.Equal(2, s.Stats.ZeroWriteFallbacks);
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_O_DIRECT_unaligned_memory_is_bounced_counted_and_correct(FileAioMode aio)
    {
        string path = NewFile(Ext4Dir, 4 * MiB);
        try
        {
            using var s = Open(path, aio, FileCacheMode.None);
            Assert.Equal(LibC.O_DIRECT, OpenFlags(s.Target.Fd) & LibC.O_DIRECT);
            using var q = s.OpenQueue(0, 8);
            var data = Pattern(600 * 1024, 1);   // larger than one bounce buffer (256 KiB): bounced in chunks
            Assert.Equal(0, Write(q, 8192, data, skew: 1));
            Assert.Equal(1, s.Stats.BouncedRequests);
            Assert.Equal(data, Read(q, 8192, data.Length, skew: 3));
            Assert.Equal(2, s.Stats.BouncedRequests);
            Assert.Equal(data, File.ReadAllBytes(path).AsSpan(8192, data.Length).ToArray());

            // Vector lengths that are not multiples of the alignment bounce too, even on aligned addresses.
            using var buf = new NativeBuffer(8192);
            var v = stackalloc IoVec[2];
            v[0] = new IoVec((nint)buf.Pointer, 1000);
            v[1] = new IoVec((nint)buf.Pointer + 4096, 3096);
            Assert.Equal(0, Run(q, Rw(BlockOp.Read, 8192, v, 2, 9)));
            Assert.Equal(3, s.Stats.BouncedRequests);
            Assert.Equal(data.AsSpan(0, 1000).ToArray(), buf.Span[..1000].ToArray());
            Assert.Equal(data.AsSpan(1000, 3096).ToArray(), buf.Span.Slice(4096, 3096).ToArray());

            // Aligned requests go straight through.
            Assert.Equal(data.AsSpan(0, 64 * 1024).ToArray(), Read(q, 8192, 64 * 1024));
            Assert.Equal(3, s.Stats.BouncedRequests);
        }
        finally { Delete(path); }
    }

    [Fact]
    public void FileStorage_cache_modes_open_with_the_flags_they_promise()
    {
        string path = NewFile(Ext4Dir, MiB);
        try
        {
            using (var wt = Open(path, FileAioMode.Sync, FileCacheMode.Writethrough))
            {
                // Writethrough: O_DSYNC on the descriptor, so every engine's writes are durable on completion; no cache to flush.
                Assert.Equal(LibC.O_DSYNC, OpenFlags(wt.Target.Fd) & LibC.O_DSYNC);
                Assert.False(wt.Info.VolatileCache);
            }
            using (var wb = Open(path, FileAioMode.Sync))
            {
                Assert.Equal(0, OpenFlags(wb.Target.Fd) & (LibC.O_DSYNC | LibC.O_DIRECT));
                Assert.True(wb.Info.VolatileCache);
            }
            using (var none = Open(path, FileAioMode.Sync, FileCacheMode.None))
            {
                Assert.Equal(LibC.O_DIRECT, OpenFlags(none.Target.Fd) & (LibC.O_DSYNC | LibC.O_DIRECT));
                Assert.True(none.Info.VolatileCache);   // the disk's cache: FLUSH stays meaningful
            }
            using (var ro = Open(path, FileAioMode.Sync, readOnly: true))
            {
                Assert.False(ro.Info.VolatileCache);
                Assert.False(ro.Info.SupportsDiscard);
                Assert.False(ro.Info.SupportsWriteZeroes);
            }
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_fua_write_is_submitted_with_RWF_DSYNC(FileAioMode aio)
    {
        string path = NewFile(Ext4Dir, MiB);
        try
        {
            using var s = Open(path, aio);
            using var q = s.OpenQueue(0, 8);
            Assert.Equal(0, Write(q, 0, Pattern(4096, 2), flags: BlockRequestFlags.Fua));
            Assert.Equal(1, s.Stats.FuaWrites);
            // What the kernel was given: the SQE's rw_flags, or the flags of the pwritev2 call.
            if (q is IoUringFileQueue uq)
            {
                var sqe = uq.Ring.LastPrepared;
                Assert.Equal(LibC.IORING_OP_WRITEV, sqe.Opcode);
                Assert.Equal((uint)LibC.RWF_DSYNC, sqe.OpFlags);
            }
            else Assert.Equal(LibC.RWF_DSYNC, s.Target.LastWriteFlags);
            // A write without FUA goes without RWF_DSYNC.
            Assert.Equal(0, Write(q, 4096, Pattern(4096, 3)));
            Assert.Equal(1, s.Stats.FuaWrites);
            if (q is IoUringFileQueue uq2) Assert.Equal(0u, uq2.Ring.LastPrepared.OpFlags);
            else Assert.Equal(0, s.Target.LastWriteFlags);

            // O_DIRECT bypasses the page cache, not the disk's cache: FUA still needs RWF_DSYNC, bounced writes too.
            using var direct = Open(path, aio, FileCacheMode.None);
            using var dq = direct.OpenQueue(0, 8);
            Assert.Equal(0, Write(dq, 8192, Pattern(4096, 4), skew: 1, flags: BlockRequestFlags.Fua));
            Assert.Equal(1, direct.Stats.BouncedRequests);
            Assert.Equal(LibC.RWF_DSYNC, direct.Target.LastWriteFlags);
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_fua_is_not_doubled_under_writethrough_nor_honoured_under_unsafe(FileAioMode aio)
    {
        string path = NewFile(Ext4Dir, MiB);
        try
        {
            foreach (var cache in new[] { FileCacheMode.Writethrough, FileCacheMode.Unsafe })
            {
                using var s = Open(path, aio, cache);
                using var q = s.OpenQueue(0, 8);
                Assert.Equal(0, Write(q, 0, Pattern(4096, 4), flags: BlockRequestFlags.Fua));
                Assert.Equal(0, s.Stats.FuaWrites);
                if (q is IoUringFileQueue uq) Assert.Equal(0u, uq.Ring.LastPrepared.OpFlags);
                else Assert.Equal(0, s.Target.LastWriteFlags);
            }
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_flush_is_fdatasync_except_under_unsafe(FileAioMode aio)
    {
        string path = NewFile(Ext4Dir, MiB);
        try
        {
            using (var s = Open(path, aio))
            using (var q = s.OpenQueue(0, 8))
            {
                Assert.Equal(0, Write(q, 0, Pattern(4096, 5)));
                Assert.Equal(0, Run(q, new BlockRequest { Op = BlockOp.Flush, Tag = 11 }));
                Assert.Equal(1, s.Stats.Flushes);
                Assert.Equal(0, s.Stats.FlushesIgnored);
                if (q is IoUringFileQueue uq)
                {
                    Assert.Equal(LibC.IORING_OP_FSYNC, uq.Ring.LastPrepared.Opcode);
                    Assert.Equal(LibC.IORING_FSYNC_DATASYNC, uq.Ring.LastPrepared.OpFlags);
                }
            }
            using (var s = Open(path, aio, FileCacheMode.Unsafe))
            using (var q = s.OpenQueue(0, 8))
            {
                Assert.True(s.Info.VolatileCache);
                Assert.Equal(0, Run(q, new BlockRequest { Op = BlockOp.Flush, Tag = 12 }));
                Assert.Equal(0, s.Stats.Flushes);
                Assert.Equal(1, s.Stats.FlushesIgnored);
            }
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_many_requests_in_flight_complete_with_their_own_tags(FileAioMode aio)
    {
        const int N = 64, Block = 4096;
        string path = NewFile(TmpfsDir, N * Block);
        var bufs = new List<NativeBuffer>();
        var vecs = new NativeBuffer(N * sizeof(IoVec));
        try
        {
            var image = Pattern(N * Block, 6);
            File.WriteAllBytes(path, image);
            using var s = Open(path, aio);
            using var q = s.OpenQueue(0, N);
            var rnd = new Random(7);
            var order = Enumerable.Range(0, N).OrderBy(_ => rnd.Next()).ToArray();
            var tags = new ulong[N];
            var reqs = new BlockRequest[N];
            var v = (IoVec*)vecs.Pointer;
            for (int i = 0; i < N; i++)
            {
                var b = new NativeBuffer(Block);
                bufs.Add(b);
                v[i] = new IoVec((nint)b.Pointer, Block);
                tags[i] = (ulong)rnd.NextInt64() | 1;
                reqs[i] = Rw(BlockOp.Read, (ulong)(order[i] * Block), &v[i], 1, tags[i]);
            }
            var done = RunAll(q, reqs);
            Assert.Equal(N, done.Count);
            Assert.Equal(tags.Order(), done.Select(c => c.Tag).Order());   // each tag exactly once
            Assert.All(done, c => Assert.Equal(0, c.Error));
            for (int i = 0; i < N; i++) Assert.True(bufs[i].Span.SequenceEqual(image.AsSpan(order[i] * Block, Block)), $"request {i}");
            Assert.Equal(N, s.Stats.Completed);
        }
        finally
        {
            foreach (var b in bufs) b.Dispose();
            vecs.Dispose();
            Delete(path);
        }
    }

    [Fact]
    public void FileStorage_io_uring_unavailable_falls_back_to_threads_and_says_why()
    {
        string path = NewFile(TmpfsDir, MiB);
        try
        {
            var log = new ListLogger();
            using var s = new FileStorage(new FileStorageOptions { Path = path, Aio = FileAioMode.IoUring, SimulateIoUringSetupErrno = LibC.EPERM }, log);
            Assert.Equal(FileAioMode.Threads, s.Aio);
            Assert.Contains("aio=threads", s.Info.Description);
            Assert.Contains("io_uring_setup failed", s.Info.Description);
            Assert.Contains(log.Lines, l => l.StartsWith("Warning:", StringComparison.Ordinal) && l.Contains("io_uring_setup failed"));
            using var q = s.OpenQueue(0, 4);
            Assert.Equal(FileAioMode.Threads, ((FileQueue)q).Mode);
            Assert.Equal(0, Write(q, 0, Pattern(4096, 8)));
            Assert.Equal(Pattern(4096, 8), Read(q, 0, 4096));

            // Without the simulation this kernel has io_uring: the mode asked for is kept and no reason is given.
            using var real = Open(path, FileAioMode.IoUring);
            Assert.Equal(FileAioMode.IoUring, real.Aio);
            Assert.Equal("", real.AioReason);
            Assert.Contains("aio=io_uring", real.Info.Description);
        }
        finally { Delete(path); }
    }

    public static TheoryData<FileAioMode, FileCacheMode> AioAndCache()
    {
        var d = new TheoryData<FileAioMode, FileCacheMode>();
        foreach (var a in new[] { FileAioMode.IoUring, FileAioMode.Threads, FileAioMode.Sync })
            foreach (var c in new[] { FileCacheMode.Writeback, FileCacheMode.None })
                d.Add(a, c);
        return d;
    }

    [Theory]
    [MemberData(nameof(AioAndCache))]
    public void FileStorage_reads_past_the_end_of_a_shrunk_file_return_zeros(FileAioMode aio, FileCacheMode cache)
    {
        string path = NewFile(Ext4Dir, MiB, fill: 0x5A);
        try
        {
            using var s = Open(path, aio, cache);
            using var q = s.OpenQueue(0, 8);
            Assert.Equal((ulong)MiB, s.QuerySize());
            // Someone else shrinks the image: once to a block boundary, once in the middle of a block.
            foreach (long newSize in new long[] { 256 * 1024 + 4096, 200 * 1024 + 100 })
            {
                using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) fs.SetLength(newSize);
                var across = Read(q, 192 * 1024, 128 * 1024);   // starts inside, ends past the end
                int inside = (int)(newSize - 192 * 1024);
                Assert.All(across.AsSpan(0, Math.Min(inside, across.Length)).ToArray(), b => Assert.Equal(0x5A, b));
                Assert.All(across.AsSpan(Math.Min(inside, across.Length)).ToArray(), b => Assert.Equal(0, b));
                Assert.All(Read(q, 512 * 1024, 64 * 1024), b => Assert.Equal(0, b));   // wholly past the end
                Assert.Equal((ulong)newSize & ~511UL, s.QuerySize());
            }
            Assert.True(s.Stats.EofZeroFills >= 4);
            Assert.Equal(0, s.Stats.Errors);
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_read_only_refuses_writes_discards_and_write_zeroes(FileAioMode aio)
    {
        string path = NewFile(TmpfsDir, MiB, fill: 0x42);
        try
        {
            using var s = Open(path, aio, readOnly: true);
            Assert.True(s.Info.ReadOnly);
            Assert.Equal(LibC.O_RDONLY, OpenFlags(s.Target.Fd) & 3);
            using var q = s.OpenQueue(0, 8);
            Assert.Equal(LibC.EROFS, Write(q, 0, new byte[4096]));
            Assert.Equal(LibC.EROFS, Run(q, Range(BlockOp.Discard, 0, 4096, 1)));
            Assert.Equal(LibC.EROFS, Run(q, Range(BlockOp.WriteZeroes, 0, 4096, 2, BlockRequestFlags.Unmap)));
            Assert.All(File.ReadAllBytes(path), b => Assert.Equal(0x42, b));
            Assert.All(Read(q, 0, 4096), b => Assert.Equal(0x42, b));
            Assert.Equal(3, s.Stats.Errors);
        }
        finally { Delete(path); }
    }

    [Theory]
    [MemberData(nameof(AioModes))]
    public void FileStorage_disposing_a_queue_with_requests_in_flight_waits_for_them(FileAioMode aio)
    {
        const int N = 32;
        string path = NewFile(Ext4Dir, N * 64 * 1024);
        var data = new NativeBuffer(N * 64 * 1024);
        var vecs = new NativeBuffer(N * sizeof(IoVec));
        try
        {
            Pattern(data.Length, 9).CopyTo(data.Span);
            using var s = Open(path, aio, FileCacheMode.Writethrough);   // O_DSYNC: each write takes a while
            var q = s.OpenQueue(0, N);
            var v = (IoVec*)vecs.Pointer;
            for (int i = 0; i < N; i++)
            {
                v[i] = new IoVec((nint)data.Pointer + i * 64 * 1024, 64 * 1024);
                q.Submit(Rw(BlockOp.Write, (ulong)i * 64 * 1024, &v[i], 1, (ulong)i));
            }
            q.Kick();
            q.Dispose();   // nothing reaped: every request is still ours
            Assert.Equal(N, s.Stats.Completed);
            Assert.Equal(0, s.Stats.Abandoned);
            Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(data.Span));
        }
        finally
        {
            data.Dispose(); vecs.Dispose();
            Delete(path);
        }
    }

    [Fact]
    public void FileStorage_info_describes_an_ext4_file_truthfully()
    {
        string path = NewFile(Ext4Dir, MiB + 1000);   // not a whole number of sectors: the tail is not exposed
        try
        {
            using var s = Open(path, FileAioMode.Sync);
            Assert.Equal((ulong)MiB + 512, s.Info.Size);
            Assert.Equal(512u, s.Info.LogicalBlockSize);
            Assert.Equal(4096u, s.Info.PhysicalBlockSize);   // ext4's block: smaller writes are read-modify-write
            Assert.Equal(4096u, s.Info.DiscardAlignment);    // a partial block is zeroed, not deallocated
            Assert.True(s.Info.SupportsDiscard && s.Info.SupportsWriteZeroes && s.Info.WriteZeroesMayUnmap);
            Assert.Equal(MiB + 1000, new FileInfo(path).Length);   // the punch probe changed nothing

            using var big = new FileStorage(new FileStorageOptions { Path = path, Aio = FileAioMode.Sync, LogicalBlockSize = 4096 });
            Assert.Equal(4096u, big.Info.LogicalBlockSize);
            Assert.Equal((ulong)MiB, big.Info.Size);
            Assert.Throws<ArgumentException>(() => new FileStorage(new FileStorageOptions { Path = path, LogicalBlockSize = 1000 }));
            Assert.Throws<FileNotFoundException>(() => new FileStorage(new FileStorageOptions { Path = path + ".missing" }));
        }
        finally { Delete(path); }
    }

    /// <summary>
    /// io_uring on tmpfs (no non-blocking path: the ring would give every request to a kernel worker) runs requests
    /// inline by default: they are done when Kick returns, reported by HasReadyCompletions, and the completion event is
    /// not signalled for them. On ext4 and with the option off, every request goes through the ring.
    /// </summary>
    [Theory]
    [InlineData(TmpfsDir, true, true)]
    [InlineData(TmpfsDir, false, false)]
    [InlineData(Ext4Dir, true, false)]
    public void FileStorage_io_uring_runs_requests_inline_only_on_memory_backed_files(string dir, bool option, bool expectInline)
    {
        string path = NewFile(dir, MiB, fill: 0x5A);
        try
        {
            using var s = new FileStorage(new FileStorageOptions { Path = path, Aio = FileAioMode.IoUring, InlineMemoryBacked = option });
            Assert.Equal(expectInline, s.Info.Description.Contains("requests inline"));
            Assert.Equal(dir == TmpfsDir, s.Info.Description.Contains("memory-backed"));
            using var q = s.OpenQueue(0, 8);
            using var buf = new NativeBuffer(4096);
            buf.Span.Fill(0xEE);
            var v = new IoVec((nint)buf.Pointer, 4096);
            q.Submit(Rw(BlockOp.Read, 8192, &v, 1, 3));
            q.Kick();
            if (expectInline)
            {
                Assert.True(q.HasReadyCompletions);
                var ev = (SafeFd)q.CompletionEvent!;
                Assert.Equal(-1, EventFd.WaitAny(new ReadOnlySpan<SafeFd>(in ev), 0));   // nothing signalled
            }
            var done = new List<BlockCompletion>();
            Span<BlockCompletion> c = stackalloc BlockCompletion[4];
            var end = Environment.TickCount64 + 5000;
            while (done.Count == 0 && Environment.TickCount64 < end)
            {
                if (!q.HasReadyCompletions) q.WaitForCompletions(50);
                int n = q.Reap(c);
                for (int k = 0; k < n; k++) done.Add(c[k]);
            }
            Assert.Equal([new BlockCompletion(3, 0)], done);
            Assert.All(buf.Span.ToArray(), b => Assert.Equal(0x5A, b));
            Assert.Equal(expectInline ? 1 : 0, s.Stats.Inline);
            Assert.False(q.HasReadyCompletions);
            // The same for writes, flushes and write-zeroes (tmpfs refuses ZERO_RANGE: zeros are written).
            Assert.Equal(0, Write(q, 0, new byte[4096].Select(_ => (byte)0x11).ToArray()));
            Assert.Equal(0, Run(q, new BlockRequest { Op = BlockOp.Flush, Tag = 4 }));
            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 65536, 65536, 5)));
            Assert.All(Read(q, 0, 4096), b => Assert.Equal(0x11, b));
            Assert.All(Read(q, 65536, 65536), b => Assert.Equal(0, b));
            Assert.Equal(expectInline ? 6 : 0, s.Stats.Inline);
        }
        finally { Delete(path); }
    }

    [Fact]
    public void FileStorage_cli_spellings_parse()
    {
        Assert.Equal(FileCacheMode.None, FileStorageOptions.ParseCache("none"));
        Assert.Equal(FileCacheMode.Writethrough, FileStorageOptions.ParseCache("writethrough"));
        Assert.Equal(FileCacheMode.Unsafe, FileStorageOptions.ParseCache("unsafe"));
        Assert.Equal(FileCacheMode.Writeback, FileStorageOptions.ParseCache("writeback"));
        Assert.Equal(FileAioMode.IoUring, FileStorageOptions.ParseAio("io_uring"));
        Assert.Equal(FileAioMode.Threads, FileStorageOptions.ParseAio("threads"));
        Assert.Equal(FileAioMode.Sync, FileStorageOptions.ParseAio("sync"));
        Assert.Throws<ArgumentException>(() => FileStorageOptions.ParseAio("native"));
        foreach (var m in Enum.GetValues<FileCacheMode>()) Assert.Equal(m, FileStorageOptions.ParseCache(FileStorageOptions.Name(m)));
        foreach (var m in Enum.GetValues<FileAioMode>()) Assert.Equal(m, FileStorageOptions.ParseAio(FileStorageOptions.Name(m)));
    }
}
