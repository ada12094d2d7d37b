using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Storage.Nbd;
using Xunit.Abstractions;

namespace VirtioSharp.Tests.Nbd;

/// <summary>NbdStorage against the real servers (qemu-nbd, nbdkit) on Unix sockets, checked against the image file.</summary>
[Collection("NbdSerial")]
public class NbdStorageTests(ITestOutputHelper output)
{
    private const int MiB = 1 << 20;

    private static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static string Image(string dir, long size)
    {
        var path = Path.Combine(dir, "disk.img");
        using var f = File.Create(path);
        f.SetLength(size);
        return path;
    }

    private static byte[] FileRange(string path, long offset, int length)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var b = new byte[length];
        f.Position = offset;
        f.ReadExactly(b);
        return b;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern long lseek(int fd, long offset, int whence);
    private const int SeekData = 3, SeekHole = 4;

    /// <summary>Whether [offset, offset+length) of the file is all hole (SEEK_DATA finds no data before its end).</summary>
    private static bool IsHole(string path, long offset, long length)
    {
        using var h = File.OpenHandle(path);
        int fd = (int)h.DangerousGetHandle();
        long data = lseek(fd, offset, SeekData);
        return data < 0 ? Marshal.GetLastPInvokeError() == 6 /* ENXIO: no data after offset */ : data >= offset + length;
    }

    [Fact]
    public void Nbd_QemuNbd_HandshakeSizeAndFlags()
    {
        var dir = NbdServerProcess.NewDir();
        var img = Image(dir, 64 * MiB);
        using var server = NbdServerProcess.QemuNbd(dir, img, "--discard=unmap");
        using var storage = NbdStorage.Open(server.Uri);
        var info = storage.Info;
        output.WriteLine(info.Description);
        Assert.Equal(64UL * MiB, info.Size);
        Assert.Equal(64UL * MiB, storage.QuerySize());
        Assert.False(info.ReadOnly);
        Assert.True(info.VolatileCache);
        Assert.True(info.SupportsDiscard);
        Assert.True(info.SupportsWriteZeroes);
        Assert.True(storage.StructuredReplies);
        Assert.Equal(512u, info.LogicalBlockSize);
    }

    [Fact]
    public void Nbd_QemuNbd_ReadOnlyExport()
    {
        var dir = NbdServerProcess.NewDir();
        var img = Image(dir, 8 * MiB);
        using var server = NbdServerProcess.QemuNbd(dir, img, "-r");
        using var storage = NbdStorage.Open(server.Uri);
        Assert.True(storage.Info.ReadOnly);
        Assert.False(storage.Info.SupportsDiscard);
        Assert.False(storage.Info.SupportsWriteZeroes);
        using var io = new NbdTestIo(storage.OpenQueue(0, 4));
        Assert.Equal(30, io.RunOne(io.Write(0, new byte[4096])));   // refused locally: EROFS
        Assert.Equal(0, io.RunOne(io.Read(0, 4096, out _)));
        Assert.Equal(0, storage.Stats.ProtocolErrors);
    }

    [Fact]
    public void Nbd_QemuNbd_RoundTripsMatchTheImage()
    {
        var dir = NbdServerProcess.NewDir();
        var img = Image(dir, 32 * MiB);
        using var server = NbdServerProcess.QemuNbd(dir, img, "--discard=unmap");
        using var storage = NbdStorage.Open(server.Uri);
        using var io = new NbdTestIo(storage.OpenQueue(0, 16));

        // Writes (one FUA) of various sizes and vector layouts; each is in the file once it completed.
        var a = Pattern(4096, 1);
        var b = Pattern(3 * MiB, 2);
        var c = Pattern(65536, 3);
        var done = io.Run([io.Write(0, a), io.Write(4 * MiB, b, pieces: 7), io.Write(20 * MiB, c, BlockRequestFlags.Fua, pieces: 1)]);
        Assert.All(done.Values, e => Assert.Equal(0, e));
        Assert.Equal(a, FileRange(img, 0, a.Length));
        Assert.Equal(b, FileRange(img, 4 * MiB, b.Length));
        Assert.Equal(c, FileRange(img, 20 * MiB, c.Length));
        Assert.Equal(0, io.RunOne(io.Other(BlockOp.Flush)));

        // Reads back through the storage (a range spanning data and a hole reads zeros in the hole).
        var r1 = io.Read(4 * MiB - 4096, 3 * MiB + 8192, out var d1, pieces: 5);
        Assert.Equal(0, io.RunOne(r1));
        var got = NbdTestIo.Span(d1, 3 * MiB + 8192);
        Assert.True(got[..4096].IndexOfAnyExcept((byte)0) < 0);
        Assert.True(got.Slice(4096, b.Length).SequenceEqual(b));
        Assert.True(got[(4096 + b.Length)..].IndexOfAnyExcept((byte)0) < 0);

        // WRITE_ZEROES without UNMAP: zeros, still allocated (NO_HOLE).
        Assert.Equal(0, io.RunOne(io.Other(BlockOp.WriteZeroes, 5 * MiB, MiB)));
        Assert.True(FileRange(img, 5 * MiB, MiB).AsSpan().IndexOfAnyExcept((byte)0) < 0);
        Assert.False(IsHole(img, 5 * MiB, MiB));
        Assert.Equal(b.AsSpan(2 * MiB).ToArray(), FileRange(img, 6 * MiB, MiB));

        // TRIM: qemu-nbd --discard=unmap punches a hole in the raw file.
        Assert.False(IsHole(img, 4 * MiB, MiB));
        Assert.Equal(0, io.RunOne(io.Other(BlockOp.Discard, 4 * MiB, MiB)));
        Assert.True(IsHole(img, 4 * MiB, MiB), "TRIM left data in the file");

        // WRITE_ZEROES with UNMAP may deallocate; it must read back as zeros either way.
        Assert.Equal(0, io.RunOne(io.Other(BlockOp.WriteZeroes, 20 * MiB, 65536, BlockRequestFlags.Unmap)));
        Assert.True(FileRange(img, 20 * MiB, 65536).AsSpan().IndexOfAnyExcept((byte)0) < 0);

        var s = storage.Stats;
        Assert.Equal(0, s.ProtocolErrors);
        Assert.Equal(0, s.InternalFaults);
        Assert.Equal(0, s.Failed);
    }

    [Fact]
    public void Nbd_Nbdkit_ManyInFlightAnyOrder()
    {
        var dir = NbdServerProcess.NewDir();
        // The delay filter holds each read and write, so all of them are on the wire together; nbdkit's
        // thread pool answers in whatever order its threads finish.
        using var server = NbdServerProcess.Nbdkit(dir, "--threads=16", "--filter=delay", "memory", "64M", "delay-read=20ms", "delay-write=20ms");
        using var storage = NbdStorage.Open(server.Uri);
        const int n = 128;
        using var io = new NbdTestIo(storage.OpenQueue(0, n));
        var data = Enumerable.Range(0, n).Select(i => Pattern(4096 * (1 + i % 8), i)).ToArray();
        var writes = Enumerable.Range(0, n).Select(i => io.Write((ulong)i * 65536, data[i], pieces: 1 + i % 4)).ToArray();
        var t0 = Environment.TickCount64;
        Assert.All(io.Run(writes).Values, e => Assert.Equal(0, e));
        var bufs = new nint[n];
        var reads = Enumerable.Range(0, n).Select(i => io.Read((ulong)i * 65536, data[i].Length, out bufs[i], pieces: 1 + (i + 1) % 4)).ToArray();
        Assert.All(io.Run(reads).Values, e => Assert.Equal(0, e));
        long ms = Environment.TickCount64 - t0;
        for (int i = 0; i < n; i++) Assert.True(NbdTestIo.Span(bufs[i], data[i].Length).SequenceEqual(data[i]), $"read {i}");
        output.WriteLine($"{2 * n} requests of 20 ms each in {ms} ms");
        // Serialised they would take 2 × 128 × 20 ms ≈ 5 s.
        Assert.True(ms < 2500, $"requests did not overlap ({ms} ms)");
        Assert.Equal(0, storage.Stats.ProtocolErrors);
    }

    [Fact]
    public void Nbd_Nbdkit_MultiConn()
    {
        var dir = NbdServerProcess.NewDir();
        using var server = NbdServerProcess.Nbdkit(dir, "memory", "16M");
        var o = NbdStorageOptions.Parse(server.Uri) with { MultiConn = true };
        using var storage = new NbdStorage(o);
        Assert.True(storage.MultiConn, storage.Info.Description);
        using var q0 = new NbdTestIo(storage.OpenQueue(0, 8));
        using var q1 = new NbdTestIo(storage.OpenQueue(1, 8));
        var p = Pattern(65536, 9);
        Assert.Equal(0, q1.RunOne(q1.Write(MiB, p)));
        Assert.Equal(0, q1.RunOne(q1.Other(BlockOp.Flush)));
        Assert.Equal(0, q0.RunOne(q0.Read(MiB, p.Length, out var d)));
        Assert.True(NbdTestIo.Span(d, p.Length).SequenceEqual(p));
        Assert.Equal(0, storage.Stats.Reconnects);
    }

    [Fact]
    public void Nbd_Nbdkit_BlockSizeConstraints()
    {
        var dir = NbdServerProcess.NewDir();
        // error-policy=error: the server fails anything unaligned or above the maximum, so splitting must be right.
        using var server = NbdServerProcess.Nbdkit(dir, "--filter=blocksize-policy", "memory", "16M",
            "blocksize-minimum=4096", "blocksize-preferred=16384", "blocksize-maximum=65536", "blocksize-error-policy=error");
        using var storage = NbdStorage.Open(server.Uri);
        Assert.Equal(4096u, storage.Info.LogicalBlockSize);
        Assert.Equal(16384u, storage.Info.PhysicalBlockSize);
        Assert.Equal(65536u, storage.MaxCommandPayload);
        using var io = new NbdTestIo(storage.OpenQueue(0, 8));

        var p = Pattern(MiB + 4096, 4);
        long before = storage.Stats.Commands;
        Assert.Equal(0, io.RunOne(io.Write(2 * MiB, p, pieces: 9)));
        Assert.Equal(17, storage.Stats.Commands - before);   // 16 × 64 KiB + 4 KiB
        Assert.Equal(0, io.RunOne(io.Read(2 * MiB, p.Length, out var d, pieces: 6)));
        Assert.True(NbdTestIo.Span(d, p.Length).SequenceEqual(p));

        // Misaligned for a 4096-byte minimum: refused here (EINVAL) without a command on the wire.
        before = storage.Stats.Commands;
        Assert.Equal(22, io.RunOne(io.Read(512, 4096, out _)));
        Assert.Equal(22, io.RunOne(io.Write(0, new byte[1024])));
        Assert.Equal(before, storage.Stats.Commands);
        // Beyond the end of the export: also refused.
        Assert.Equal(22, io.RunOne(io.Read(16 * MiB - 4096, 8192, out _)));
        Assert.Equal(0, storage.Stats.ProtocolErrors);
    }

    [Fact]
    public void Nbd_Nbdkit_TcpLoopback()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        var nbdkit = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("/usr/bin/nbdkit",
            ["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", port.ToString(), "memory", "8M"]) { RedirectStandardError = true })!;
        try
        {
            NbdStorage? storage = null;
            for (int i = 0; i < 100 && storage == null; i++)
            {
                try { storage = NbdStorage.Open($"nbd://127.0.0.1:{port}/"); }
                catch (IOException) { Thread.Sleep(30); }
            }
            Assert.NotNull(storage);
            using (storage)
            {
                Assert.Equal(8UL * MiB, storage.Info.Size);
                Assert.Contains($"nbd://127.0.0.1:{port}/", storage.Info.Description);
                using var io = new NbdTestIo(storage.OpenQueue(0, 8));
                var p = Pattern(65536, 11);
                Assert.Equal(0, io.RunOne(io.Write(MiB, p)));
                Assert.Equal(0, io.RunOne(io.Read(MiB, p.Length, out var d)));
                Assert.True(NbdTestIo.Span(d, p.Length).SequenceEqual(p));
            }
        }
        finally
        {
            nbdkit.Kill();
            nbdkit.WaitForExit(5000);
            nbdkit.Dispose();
        }
    }

    [Fact]
    public void Nbd_MissingExportAndDeadSocket_ClearErrors()
    {
        var dir = NbdServerProcess.NewDir();
        using var server = NbdServerProcess.QemuNbd(dir, Image(dir, MiB), "-x", "disk0");
        var e1 = Assert.Throws<IOException>(() => NbdStorage.Open($"nbd+unix:///nope?socket={server.Socket}"));
        Assert.Contains("no export 'nope'", e1.Message);
        var e2 = Assert.Throws<IOException>(() => NbdStorage.Open($"nbd+unix:///x?socket={dir}/missing.sock"));
        Assert.Contains("cannot connect", e2.Message);
        using var ok = NbdStorage.Open($"nbd+unix:///disk0?socket={server.Socket}");
        Assert.Equal((ulong)MiB, ok.Info.Size);
    }

    [Fact]
    public void Nbd_Nbdkit_NoAllocationPerRequest()
    {
        var dir = NbdServerProcess.NewDir();
        using var server = NbdServerProcess.Nbdkit(dir, "memory", "64M");
        using var storage = NbdStorage.Open(server.Uri);
        const int depth = 32;
        using var io = new NbdTestIo(storage.OpenQueue(0, depth));
        var reqs = Enumerable.Range(0, depth).Select(i => io.Read((ulong)i * 4096, 4096, out _, pieces: 2)).ToArray();
        var writes = Enumerable.Range(0, depth).Select(i => io.Write((ulong)(i + depth) * 4096, Pattern(4096, i), pieces: 2)).ToArray();
        var done = new BlockCompletion[depth];

        void Round(BlockRequest[] batch)
        {
            foreach (var r in batch) io.Queue.Submit(r);
            io.Queue.Kick();
            int got = 0;
            while (got < batch.Length)
            {
                io.Queue.WaitForCompletions(1000);
                got += io.Queue.Reap(done);
            }
        }

        for (int i = 0; i < 20; i++) { Round(reqs); Round(writes); }   // warm up
        long bytes0 = GC.GetTotalAllocatedBytes(true);
        long mine0 = GC.GetAllocatedBytesForCurrentThread();
        long threads0 = storage.ThreadAllocatedBytes();
        var t0 = Environment.TickCount64;
        const int rounds = 300;
        for (int i = 0; i < rounds; i++) { Round(reqs); Round(writes); }
        long ms = Math.Max(1, Environment.TickCount64 - t0);
        long allocated = GC.GetTotalAllocatedBytes(true) - bytes0;
        long mine = GC.GetAllocatedBytesForCurrentThread() - mine0;
        long threads = storage.ThreadAllocatedBytes() - threads0;
        output.WriteLine($"owner thread: {mine} bytes, sender+receiver: {threads} bytes");
        int total = rounds * 2 * depth;
        output.WriteLine($"{total} 4 KiB requests (QD {depth}) in {ms} ms: {total * 1000L / ms} IOPS; {allocated} bytes allocated in all");
        // Per thread: the process total also counts the JIT and the test runner.
        Assert.True(mine + threads < 4096, $"{mine + threads} bytes allocated on the I/O threads for {total} requests");
    }
}
