using VirtioSharp.Storage.Nbd;

namespace VirtioSharp.Tests.Nbd;

/// <summary>
/// A server that breaks the protocol (bad magic, a cookie not in flight, chunks outside or longer than the request,
/// an oversize error message …): the client drops the connection, reconnects and re-sends, never writes outside the
/// request's buffer, never completes a request twice, and never hangs.
/// </summary>
public class NbdHostileServerTests
{
    private const int Size = 4 << 20;

    private static (FakeNbdServer, NbdStorage, string) Start(Func<int, FakeMode> mode, Func<NbdStorageOptions, NbdStorageOptions>? tune = null,
        ushort flags = 1 | 4 | 8)
    {
        var dir = NbdServerProcess.NewDir();
        var sock = Path.Combine(dir, "fake.sock");
        var server = new FakeNbdServer(sock, Size, mode, flags);
        new Random(42).NextBytes(server.Disk.AsSpan(0, 1 << 20));
        var o = NbdStorageOptions.Parse($"nbd+unix:///?socket={sock}") with
        {
            ReconnectDelay = TimeSpan.FromMilliseconds(10),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(50),
            RequestTimeout = TimeSpan.FromSeconds(1),
        };
        return (server, new NbdStorage(tune?.Invoke(o) ?? o), dir);
    }

    [Theory]
    [InlineData(FakeMode.BadMagic)]
    [InlineData(FakeMode.UnknownCookie)]
    [InlineData(FakeMode.DuplicateReply)]
    [InlineData(FakeMode.OverlongChunk)]
    [InlineData(FakeMode.ChunkOutsideRequest)]
    [InlineData(FakeMode.HoleOutsideRequest)]
    [InlineData(FakeMode.OversizeErrorMessage)]
    [InlineData(FakeMode.ShortRead)]
    [InlineData(FakeMode.SimpleReplyToRead)]
    [InlineData(FakeMode.UnknownChunkType)]
    [InlineData(FakeMode.Silent)]
    public unsafe void Nbd_HostileServer_ConnectionDroppedAndRequestRetried(FakeMode mode)
    {
        var (server, storage, dir) = Start(n => n == 0 ? mode : FakeMode.Good);
        try
        {
            var q = storage.OpenQueue(0, 8);
            using var io = new NbdTestIo(q);
            // Guard bytes around the buffer: the overlong chunk must not spill into them.
            var data = io.Buffer(4096 + 8192, 1, out var vecs, out _);
            var guard = NbdTestIo.Span(data, 4096 + 8192);
            guard.Fill(0x5A);
            var inner = new Devices.Block.IoVec(data + 4096, 4096);
            *vecs = inner;
            var read = new Devices.Block.BlockRequest
            {
                Op = Devices.Block.BlockOp.Read, Offset = 8192, Length = 4096, Vectors = vecs, VectorCount = 1, Tag = 7,
            };
            Assert.Equal(0, io.RunOne(read, 15_000));
            Assert.True(guard.Slice(4096, 4096).SequenceEqual(server.Disk.AsSpan(8192, 4096)), "read data wrong");
            Assert.True(guard[..4096].IndexOfAnyExcept((byte)0x5A) < 0, "bytes before the buffer were written");
            Assert.True(guard[8192..].IndexOfAnyExcept((byte)0x5A) < 0, "bytes after the buffer were written");

            // A second request goes through on the new connection; a duplicate reply would show up as a stray completion.
            Assert.Equal(0, io.RunOne(io.Read(0, 4096, out _)));
            Assert.Equal(0, io.Stray(100));
            var s = storage.Stats;
            if (mode == FakeMode.Silent) Assert.True(s.Disconnects >= 1, "a silent server was not given up on");
            else Assert.True(s.ProtocolErrors >= 1, $"{mode} was not detected");
            Assert.True(s.Reconnects >= 1);
            Assert.True(server.Connections >= 2);
            Assert.Equal(0, s.InternalFaults);
            q.Dispose();
        }
        finally
        {
            storage.Dispose();
            server.Dispose();
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Nbd_AlwaysHostileServer_RequestFailsWithEio_NoHang()
    {
        var (server, storage, dir) = Start(_ => FakeMode.UnknownCookie, o => o with { MaxResends = 2 });
        try
        {
            using var io = new NbdTestIo(storage.OpenQueue(0, 4));
            var t0 = Environment.TickCount64;
            Assert.Equal(Devices.Block.BlockCompletion.IoError, io.RunOne(io.Read(0, 4096, out _), 10_000));
            Assert.True(Environment.TickCount64 - t0 < 5000);
            var s = storage.Stats;
            Assert.True(s.ProtocolErrors >= 3, $"protocol errors {s.ProtocolErrors}");
            Assert.Equal(0, s.InternalFaults);
        }
        finally
        {
            storage.Dispose();
            server.Dispose();
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Nbd_RepliesInReverseOrderAndFragmented_Reassembled()
    {
        var (server, storage, dir) = Start(_ => FakeMode.ReverseFragmented);
        try
        {
            using var io = new NbdTestIo(storage.OpenQueue(0, 32));
            // Half of the reads cover the random first MiB, half the zero rest (served as holes).
            const int n = 32;
            var bufs = new nint[n];
            var reads = Enumerable.Range(0, n).Select(i => io.Read((ulong)(i * 131072 + (i % 3) * 512), 8192 + 512 * i, out bufs[i], pieces: 1 + i % 5)).ToArray();
            // Poison the buffers: holes must be written as zeros.
            for (int i = 0; i < n; i++) NbdTestIo.Span(bufs[i], 8192 + 512 * i).Fill(0xCC);
            Assert.All(io.Run(reads).Values, e => Assert.Equal(0, e));
            for (int i = 0; i < n; i++)
            {
                int off = i * 131072 + (i % 3) * 512, len = 8192 + 512 * i;
                Assert.True(NbdTestIo.Span(bufs[i], len).SequenceEqual(server.Disk.AsSpan(off, len)), $"read {i}");
            }
            Assert.True(server.Reordered >= n);
            Assert.Equal(0, storage.Stats.ProtocolErrors);
        }
        finally
        {
            storage.Dispose();
            server.Dispose();
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Nbd_FuaWrite_OnServerWithoutFua_GetsTrailingFlush()
    {
        // HAS_FLAGS | SEND_FLUSH, no SEND_FUA: the client MUST NOT set NBD_CMD_FLAG_FUA, so it flushes after the write's reply.
        var (server, storage, dir) = Start(_ => FakeMode.Good, flags: 1 | 4);
        try
        {
            using var io = new NbdTestIo(storage.OpenQueue(0, 4));
            Assert.True(storage.Info.VolatileCache);
            var p = new byte[8192];
            new Random(3).NextBytes(p);
            lock (server.Commands) server.Commands.Clear();
            Assert.Equal(0, io.RunOne(io.Write(4096, p, Devices.Block.BlockRequestFlags.Fua)));
            lock (server.Commands) Assert.Equal(new ushort[] { 1, 3 }, server.Commands);   // WRITE without flags, then FLUSH
            Assert.True(server.Disk.AsSpan(4096, p.Length).SequenceEqual(p));

        }
        finally
        {
            storage.Dispose();
            server.Dispose();
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Nbd_FuaWrite_OnServerWithFua_SetsTheFlag()
    {
        var (server, storage, dir) = Start(_ => FakeMode.Good);
        try
        {
            using var io = new NbdTestIo(storage.OpenQueue(0, 4));
            lock (server.Commands) server.Commands.Clear();
            Assert.Equal(0, io.RunOne(io.Write(0, new byte[4096], Devices.Block.BlockRequestFlags.Fua)));
            lock (server.Commands) Assert.Equal(new ushort[] { 1 | 1 << 8 }, server.Commands);   // WRITE with NBD_CMD_FLAG_FUA
        }
        finally
        {
            storage.Dispose();
            server.Dispose();
            Directory.Delete(dir, true);
        }
    }
}
