using VirtioSharp.Devices.Block;
using VirtioSharp.Storage.Nbd;

namespace VirtioSharp.Tests.Nbd;

/// <summary>A server that dies under I/O: requests survive a restart within the timeout and fail with EIO after it.</summary>
public class NbdReconnectTests
{
    private const int MiB = 1 << 20;

    private static NbdStorageOptions Fast(string uri, double reconnectTimeoutS = 20) => NbdStorageOptions.Parse(uri) with
    {
        ReconnectDelay = TimeSpan.FromMilliseconds(20),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(200),
        ReconnectTimeout = TimeSpan.FromSeconds(reconnectTimeoutS),
    };

    [Fact]
    public void Nbd_ServerKilledAndRestartedMidIo_NothingFails()
    {
        var dir = NbdServerProcess.NewDir();
        var img = Path.Combine(dir, "disk.img");
        using (var f = File.Create(img)) f.SetLength(16 * MiB);
        // The delay filter keeps every request on the server for 300 ms, so the kill lands while all are in flight.
        string[] args = ["--filter=delay", "file", img, "delay-read=300ms", "delay-write=300ms"];
        using var server = NbdServerProcess.Nbdkit(dir, args);
        using var storage = new NbdStorage(Fast(server.Uri));
        using var io = new NbdTestIo(storage.OpenQueue(0, 64));

        var data = Enumerable.Range(0, 32).Select(i => { var b = new byte[16384]; new Random(i).NextBytes(b); return b; }).ToArray();
        var writes = Enumerable.Range(0, 32).Select(i => io.Write((ulong)i * 65536, data[i])).ToList();
        foreach (var w in writes) io.Queue.Submit(w);
        io.Queue.Kick();
        Thread.Sleep(100);
        server.Kill();
        Thread.Sleep(400);
        server.Start();
        var done = io.Collect(writes.Select(w => w.Tag).ToHashSet(), 20_000);
        Assert.All(done.Values, e => Assert.Equal(0, e));

        // Reads in flight across a second kill.
        var bufs = new nint[32];
        var reads = Enumerable.Range(0, 32).Select(i => io.Read((ulong)i * 65536, 16384, out bufs[i])).ToList();
        foreach (var r in reads) io.Queue.Submit(r);
        io.Queue.Kick();
        Thread.Sleep(100);
        server.Kill();
        Thread.Sleep(300);
        server.Start();
        Assert.All(io.Collect(reads.Select(r => r.Tag).ToHashSet(), 20_000).Values, e => Assert.Equal(0, e));
        for (int i = 0; i < 32; i++) Assert.True(NbdTestIo.Span(bufs[i], 16384).SequenceEqual(data[i]), $"read {i}");

        using (var f = new FileStream(img, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            for (int i = 0; i < 32; i++)
            {
                var b = new byte[16384];
                f.Position = i * 65536L;
                f.ReadExactly(b);
                Assert.Equal(data[i], b);
            }
        var s = storage.Stats;
        Assert.True(s.Reconnects >= 2, $"reconnects {s.Reconnects}");
        Assert.True(s.Resends >= 32, $"resends {s.Resends}");
        Assert.Equal(0, s.Failed);
        Assert.Equal(0, s.InternalFaults);
    }

    [Fact]
    public void Nbd_ServerGone_RequestsFailWithEioAfterTimeout_ThenRecover()
    {
        var dir = NbdServerProcess.NewDir();
        var img = Path.Combine(dir, "disk.img");
        using (var f = File.Create(img)) f.SetLength(4 * MiB);
        using var server = NbdServerProcess.Nbdkit(dir, "file", img);
        using var storage = new NbdStorage(Fast(server.Uri, reconnectTimeoutS: 1));
        using var io = new NbdTestIo(storage.OpenQueue(0, 8));
        Assert.Equal(0, io.RunOne(io.Write(0, new byte[4096])));

        server.Kill();
        var t0 = Environment.TickCount64;
        var r = io.Read(0, 4096, out _);
        Assert.Equal(BlockCompletion.IoError, io.RunOne(r, 10_000));
        long waited = Environment.TickCount64 - t0;
        Assert.InRange(waited, 700, 5000);

        // Past the timeout, new requests fail at once rather than waiting again.
        t0 = Environment.TickCount64;
        Assert.Equal(BlockCompletion.IoError, io.RunOne(io.Write(0, new byte[4096])));
        Assert.True(Environment.TickCount64 - t0 < 500);

        // The server returns: the storage reconnects by itself and requests work again.
        server.Start();
        var deadline = Environment.TickCount64 + 10_000;
        int err;
        do
        {
            err = io.RunOne(io.Read(0, 4096, out _));
            if (err != 0) Thread.Sleep(50);
        }
        while (err != 0 && Environment.TickCount64 < deadline);
        Assert.Equal(0, err);
        Assert.Equal(0, storage.Stats.InternalFaults);
    }

    [Fact]
    public void Nbd_DisposeWithServerGone_ReturnsPromptly()
    {
        var dir = NbdServerProcess.NewDir();
        using var server = NbdServerProcess.Nbdkit(dir, "memory", "4M");
        var storage = new NbdStorage(Fast(server.Uri));
        var q = storage.OpenQueue(0, 4);
        server.Kill();
        Thread.Sleep(100);
        var t0 = Environment.TickCount64;
        q.Dispose();
        storage.Dispose();
        Assert.True(Environment.TickCount64 - t0 < 2000);
    }
}
