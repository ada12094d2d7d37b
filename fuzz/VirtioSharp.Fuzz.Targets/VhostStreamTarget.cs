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
/// unsealed small memfd, an eventfd, /dev/null, a pipe end, a socket end). The messages go over a socketpair to a
/// <see cref="VhostUserBackend"/> whose loop runs until EOF; replies are drained, the back-end disposed as the server
/// does. Oracle: only the documented exceptions stay inside the loop (anything escaping is a finding), and afterwards
/// no descriptor is left open.
/// </summary>
public static unsafe class VhostStreamTarget
{
    public const int MaxMessages = 32;
    public const ulong MemFdBytes = 64 * 1024;
    private const uint MfdAllowSealing = 2;
    private const int FAddSeals = 1033, FSealShrink = 2, ShutWrite = 1;

    /// <summary>What rides with a message as SCM_RIGHTS.</summary>
    public enum FdKind : byte { SealedMemFd, SmallMemFd, EventFd, DevNull, Pipe, Socket }

    // One device for the whole process, as the server keeps one device across connections.
    private static readonly BlockDevice<DeviceMemory<TranslatorRef, RamPort>> Device = new(new MemoryBackend(1 << 20),
        new BlockDeviceOptions { NumQueues = 2, QueueSize = 16, OfferAccessPlatform = true, OfferPacked = true, OfferInOrder = true });

    public static void Run(ReadOnlySpan<byte> input)
    {
        FdCensus.Start();
        var c = new ByteCursor(input);
        var (serverEnd, clientEnd) = SafeFd.SocketPair();
        var client = new FdSocket(clientEnd);
        var keep = new List<IDisposable>();   // peers of sockets and pipes we handed over, closed at the end
        var backend = new VhostUserBackend(new FdSocket(serverEnd), Device, TriageLogger.Instance, new VhostStats());
        // A worker waiting for an IOTLB update nobody sends gives up quickly (the default is 5 s).
        backend.Iotlb.MissTimeoutMs = 20;
        try
        {
            for (int n = 0; n < MaxMessages && c.More; n++)
            {
                var (bytes, fds) = Decode(ref c, keep);
                try { client.Send(bytes, fds.ToArray()); }
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
            foreach (var fd in keep) fd.Dispose();
        }
        FdCensus.AssertNoneLeaked("after the connection ended");
    }

    /// <summary>Reads every reply the back-end queued and closes the fds that came with them.</summary>
    private static void Drain(FdSocket client)
    {
        var hb = new byte[VhostHeader.Length];
        var body = new byte[VhostHeader.MaxPayload];
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

    private static (byte[] Bytes, List<SafeFd> Fds) Decode(ref ByteCursor c, List<IDisposable> keep)
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
        for (int i = 0; i < recipe % 4; i++) fds.Add(Make((FdKind)(c.U8() % 6), keep));
        return (bytes, fds);
    }

    private static SafeFd Make(FdKind kind, List<IDisposable> keep)
    {
        switch (kind)
        {
            case FdKind.SealedMemFd:
            case FdKind.SmallMemFd:
            {
                bool seal = kind == FdKind.SealedMemFd;
                int fd = LibC.MemfdCreate("fuzz-vhost", LibC.MFD_CLOEXEC | (seal ? MfdAllowSealing : 0));
                Invariant.That(fd >= 0, "memfd_create failed");
                var h = new SafeFd(fd);
                LibC.FTruncate(fd, seal ? (long)MemFdBytes : 4096);
                if (seal) LibC.Fcntl(fd, FAddSeals, FSealShrink);
                return h;
            }
            case FdKind.EventFd: return EventFd.Create().Handle;
            case FdKind.DevNull:
            {
                using var h = File.OpenHandle("/dev/null");
                return CloexecDup.Of(h);
            }
            case FdKind.Pipe:
            {
                // The read end goes to the back-end; the write end stays here until the connection is over.
                var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
                keep.Add(pipe);
                return CloexecDup.Of(pipe.ClientSafePipeHandle);
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
