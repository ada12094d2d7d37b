using VirtioSharp.Interop;
using VirtioSharp.Tests.Support;
using static VirtioSharp.Tests.Support.StorageRig;

namespace VirtioSharp.Tests;

/// <summary>The io_uring wrapper against the real kernel: batches, user_data, the eventfd, wrap-around, the file opcodes.</summary>
public unsafe class IoUringTests
{
    private static IoUring NewRing(uint entries)
    {
        Assert.Equal(0, IoUring.TryCreate(entries, out var ring));
        return ring!;
    }

    private static LibC.IoUringCqe[] WaitAll(IoUring ring, int count)
    {
        var got = new List<LibC.IoUringCqe>();
        var buf = new LibC.IoUringCqe[16];
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (got.Count < count)
        {
            int n = ring.Reap(buf);
            got.AddRange(buf.Take(n));
            if (n == 0)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{got.Count}/{count} completions");
                ring.Submit(waitFor: 1);
            }
        }
        return [.. got];
    }

    [Fact]
    public void IoUring_nop_batch_is_one_enter_and_signals_the_registered_eventfd()
    {
        using var ring = NewRing(8);
        Assert.Equal(8u, ring.SqEntries);
        Assert.True(ring.CqEntries >= 16);
        using var ev = EventFd.Create(nonBlocking: true);
        Assert.Equal(0, ring.RegisterEventFd(ev.Handle));
        for (ulong i = 0; i < 8; i++)
        {
            var sqe = ring.TryGetSqe();
            Assert.True(sqe != null);
            sqe->Opcode = LibC.IORING_OP_NOP;
            sqe->UserData = 100 + i;
        }
        Assert.True(ring.TryGetSqe() == null);   // all 8 prepared: the SQ is full until submitted
        Assert.Equal(8, ring.Submit());
        Assert.Equal(0u, ring.Unsubmitted);
        var h = ev.Handle;
        Assert.Equal(0, EventFd.WaitAny(new ReadOnlySpan<SafeFd>(in h), 5000));
        Assert.True(ev.Drain() >= 1);
        var cqes = WaitAll(ring, 8);
        Assert.Equal(Enumerable.Range(100, 8).Select(i => (ulong)i), cqes.Select(c => c.UserData).Order());
        Assert.All(cqes, c => Assert.Equal(0, c.Res));
        Assert.Equal(0u, ring.Ready);
    }

    [Fact]
    public void IoUring_wraps_its_rings_many_times()
    {
        using var ring = NewRing(4);
        ulong next = 0, seen = 0;
        for (int round = 0; round < 500; round++)
        {
            int batch = round % 4 + 1;
            for (int i = 0; i < batch; i++)
            {
                var sqe = ring.TryGetSqe();
                sqe->Opcode = LibC.IORING_OP_NOP;
                sqe->UserData = next++;
            }
            Assert.Equal(batch, ring.Submit());
            foreach (var c in WaitAll(ring, batch).OrderBy(c => c.UserData)) Assert.Equal(seen++, c.UserData);
        }
        Assert.Equal(next, seen);
    }

    [Fact]
    public void IoUring_readv_writev_fsync_and_fallocate_do_what_they_say()
    {
        string path = NewFile(Ext4Dir, 1 << 20);
        try
        {
            using var f = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            int fd = (int)f.DangerousGetHandle();
            using var ring = NewRing(8);
            using var a = new NativeBuffer(4096);
            using var b = new NativeBuffer(8192);
            Pattern(4096, 1).CopyTo(a.Span);
            Pattern(8192, 2).CopyTo(b.Span);
            var iov = stackalloc LibC.IoVec[2];
            iov[0] = new LibC.IoVec { Base = a.Pointer, Len = 4096 };
            iov[1] = new LibC.IoVec { Base = b.Pointer, Len = 8192 };

            var w = ring.TryGetSqe();
            w->Opcode = LibC.IORING_OP_WRITEV; w->Fd = fd; w->Addr = (ulong)iov; w->Len = 2; w->Off = 65536; w->UserData = 1;
            Assert.Equal(1, ring.Submit());
            Assert.Equal(12288, WaitAll(ring, 1)[0].Res);

            var s = ring.TryGetSqe();
            s->Opcode = LibC.IORING_OP_FSYNC; s->Fd = fd; s->OpFlags = LibC.IORING_FSYNC_DATASYNC; s->UserData = 2;
            var p = ring.TryGetSqe();
            p->Opcode = LibC.IORING_OP_FALLOCATE; p->Fd = fd; p->Off = 0; p->Addr = 65536;
            p->Len = LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE; p->UserData = 3;
            Assert.Equal(2, ring.Submit());
            Assert.All(WaitAll(ring, 2), c => Assert.Equal(0, c.Res));
            Assert.True(IsHole(path, 0, 65536));

            using var back = new NativeBuffer(12288);
            var riov = new LibC.IoVec { Base = back.Pointer, Len = 12288 };
            var r = ring.TryGetSqe();
            r->Opcode = LibC.IORING_OP_READV; r->Fd = fd; r->Addr = (ulong)&riov; r->Len = 1; r->Off = 65536; r->UserData = 4;
            Assert.Equal(1, ring.Submit());
            var rc = WaitAll(ring, 1)[0];
            Assert.Equal(4ul, rc.UserData);
            Assert.Equal(12288, rc.Res);
            Assert.Equal(Pattern(4096, 1).Concat(Pattern(8192, 2)).ToArray(), back.Span.ToArray());
        }
        finally { Delete(path); }
    }

    [Fact]
    public void IoUring_errors_come_back_as_negative_errno_in_the_cqe()
    {
        using var ring = NewRing(2);
        var sqe = ring.TryGetSqe();
        sqe->Opcode = LibC.IORING_OP_FSYNC; sqe->Fd = 1 << 20; sqe->UserData = 9;   // no such descriptor
        Assert.Equal(1, ring.Submit());
        var c = WaitAll(ring, 1)[0];
        Assert.Equal(9ul, c.UserData);
        Assert.Equal(-LibC.EBADF, c.Res);
    }

    [Fact]
    public void IoUring_probe_finds_the_opcodes_file_storage_needs()
    {
        using var ring = NewRing(2);
        Assert.Equal(0, ring.ProbeOps([LibC.IORING_OP_READV, LibC.IORING_OP_WRITEV, LibC.IORING_OP_FSYNC, LibC.IORING_OP_FALLOCATE], out int missing));
        Assert.Equal(-1, missing);
        Assert.Equal(0, ring.ProbeOps([250], out missing));
        Assert.Equal(250, missing);
    }
}
