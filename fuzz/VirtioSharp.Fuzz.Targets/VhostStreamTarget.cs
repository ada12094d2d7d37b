using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// The vhost-user message stream into the real back-end: each message is a request (one of the known ones, or any
/// number), header flags, a declared size that may lie, a payload, and an fd recipe (none, a sealed memfd, an
/// unsealed small memfd, an eventfd, /dev/null, a pipe end, a socket end; up to 3, or 8 to 23 to go past the
/// back-end's cap of 8). The messages go over a socketpair to a <see cref="VhostUserBackend"/> whose loop runs until
/// EOF; replies are drained, the back-end disposed as the server does. Oracle: only the documented exceptions stay
/// inside the loop (anything escaping is a finding), and afterwards no descriptor is left open: the census, plus the
/// peers we kept of every pipe and socket end we sent, which must see the back-end's end closed.
/// </summary>
public static unsafe class VhostStreamTarget
{
    public const int MaxMessages = 32;
    public const ulong MemFdBytes = 64 * 1024;
    /// <summary>Descriptors past this many in one message are over the back-end's cap (<see cref="FdSocket.MaxFds"/>).</summary>
    public const int ManyFdsBase = 8;
    private const int ShutWrite = 1;

    /// <summary>What rides with a message as SCM_RIGHTS.</summary>
    public enum FdKind : byte { SealedMemFd, SmallMemFd, EventFd, DevNull, Pipe, Socket }

    // One device for the whole process, as the server keeps one device across connections.
    private static readonly BlockDevice<DeviceMemory<TranslatorRef, RamPort>> Device = new(new MemoryBackend(1 << 20),
        new BlockDeviceOptions { NumQueues = 2, QueueSize = 16, OfferAccessPlatform = true, OfferPacked = true, OfferInOrder = true });

    // Made before the first census; an input takes its memfds from here (see MemFdPool).
    private static readonly MemFdPool Sealed = new("fuzz-vhost", MemFdBytes, seal: true, count: 8);
    private static readonly MemFdPool Small = new("fuzz-vhost", 4096, seal: false, count: 4);
    private static readonly SafeFd DevNull = CloexecDup.Of(File.OpenHandle("/dev/null"));
    private static readonly byte[] ReplyHeader = new byte[VhostHeader.Length];
    private static readonly byte[] ReplyBody = new byte[VhostHeader.MaxPayload];

    public static void Run(ReadOnlySpan<byte> input)
    {
        Sealed.Reset();
        Small.Reset();
        FdCensus.Start();
        var c = new ByteCursor(input);
        var (serverEnd, clientEnd) = SafeFd.SocketPair();
        var client = new FdSocket(clientEnd);
        var keep = new List<SafeFd>();   // our ends of the sockets and pipes we handed over, closed at the end
        var backend = new VhostUserBackend(new FdSocket(serverEnd), Device, TriageLogger.Instance, new VhostStats());
        // A worker waiting for an IOTLB update nobody sends gives up quickly (the default is 5 s).
        backend.Iotlb.MissTimeoutMs = 20;
        try
        {
            for (int n = 0; n < MaxMessages && c.More; n++)
            {
                var (bytes, fds) = Decode(ref c, keep);
                try { ScmRights.Send(clientEnd, bytes, fds); }
                finally { foreach (var fd in fds) fd.Dispose(); }
            }
            // EOF after the last message; the read side stays open so replies can be drained afterwards.
            LibC.Shutdown(clientEnd.Fd, ShutWrite);
        }
        catch
        {
            client.Dispose();
            backend.Dispose();
            foreach (var fd in keep) fd.Dispose();
            throw;
        }
        try
        {
            backend.Run();
        }
        finally
        {
            backend.Dispose();
            Drain(client);
            client.Dispose();
        }
        try { ExpectPeersClosed(keep); }
        finally { foreach (var fd in keep) fd.Dispose(); }
        FdCensus.AssertNoneLeaked("after the connection ended");
    }

    /// <summary>
    /// Every pipe read end and socket end we sent is closed in the back-end (the census does not count pipes, which
    /// the runtime makes too): our write end of a pipe sees POLLERR once no reader is left, our socket end POLLHUP.
    /// </summary>
    private static unsafe void ExpectPeersClosed(List<SafeFd> keep)
    {
        foreach (var fd in keep)
        {
            var p = new LibC.PollFd { Fd = fd.Fd, Events = LibC.POLLOUT };
            int r = LibC.Poll(&p, 1, 0);
            Invariant.That(r == 1 && (p.REvents & (LibC.POLLERR | LibC.POLLHUP)) != 0, $"a pipe or socket end sent to the back-end is still open after the connection ended (poll 0x{p.REvents:x})");
        }
    }

    /// <summary>Reads every reply the back-end queued and closes the fds that came with them.</summary>
    private static void Drain(FdSocket client)
    {
        var hb = ReplyHeader;
        var body = ReplyBody;
        var fds = new List<SafeFd>();
        try
        {
            while (client.ReceiveExact(hb, fds))
            {
                var h = VhostHeader.Parse(hb);
                Invariant.That(h.Size <= VhostHeader.MaxPayload, $"reply {h.Request} of {h.Size} bytes");
                if (h.Size > 0 && !client.ReceiveExact(body.AsSpan(0, (int)h.Size), null)) break;
            }
        }
        catch (IOException) { }   // the back-end side is gone: nothing more to read
        finally { foreach (var fd in fds) fd.Dispose(); }
    }

    private static (byte[] Bytes, List<SafeFd> Fds) Decode(ref ByteCursor c, List<SafeFd> keep)
    {
        byte pick = c.U8();
        uint request = pick < 0xF0 ? (uint)(pick % 41) : c.U32();
        byte f = c.U8();
        // Mostly version 1 with or without NEED_REPLY; now and then any flags.
        uint flags = (f & 0xF0) == 0xF0 ? c.U32() : VhostHeader.Version | ((f & 1) != 0 ? VhostHeader.NeedReplyFlag : 0);
        int len = c.U8();
        var payload = c.Bytes(len);
        uint declared = (f & 2) != 0 ? c.U16() : (uint)payload.Length;
        var bytes = new byte[VhostHeader.Length + payload.Length];
        new VhostHeader(request, flags, declared).Write(bytes);
        payload.CopyTo(bytes.AsSpan(VhostHeader.Length));
        byte recipe = c.U8();
        var fds = new List<SafeFd>();
        int count = recipe >= 0xF0 ? ManyFdsBase + (recipe & 0x0F) : recipe % 4;
        for (int i = 0; i < count; i++) fds.Add(Make((FdKind)(c.U8() % 6), keep));
        return (bytes, fds);
    }

    private static SafeFd Make(FdKind kind, List<SafeFd> keep)
    {
        switch (kind)
        {
            case FdKind.SealedMemFd: return Sealed.Next();
            case FdKind.SmallMemFd: return Small.Next();
            case FdKind.EventFd: return EventFd.Create().Handle;
            case FdKind.DevNull: return CloexecDup.Of(DevNull);
            case FdKind.Pipe:
            {
                // The read end goes to the back-end; the write end stays here until the connection is over.
                var (read, write) = ScmRights.Pipe();
                keep.Add(write);
                return read;
            }
            case FdKind.Socket:
            {
                var (a, b) = SafeFd.SocketPair();
                keep.Add(b);
                return a;
            }
        }
        throw new ArgumentOutOfRangeException(nameof(kind));
    }
}
