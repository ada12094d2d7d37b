using VirtioSharp.Interop;
using System.Runtime.InteropServices;
using System.Net.Sockets;

namespace VirtioSharp.VhostUser.Interop;

/// <summary>
/// sendmsg/recvmsg with SCM_RIGHTS over a connected Unix stream socket. Received descriptors arrive with
/// MSG_CMSG_CLOEXEC, truncated control data is an error (every descriptor that did arrive is closed), and the number of
/// descriptors per message is capped.
/// </summary>
internal sealed unsafe class FdSocket : IDisposable
{
    public const int MaxFds = 8;   // VHOST_MEMORY_BASELINE_NREGIONS: the most any front-end message carries
    private readonly SafeHandle _handle;
    private readonly IDisposable? _owner;

    public FdSocket(Socket socket)
    {
        _handle = socket.SafeHandle;
        _owner = socket;
    }

    public FdSocket(SafeFd fd)
    {
        _handle = fd;
        _owner = fd;
    }

    private static int CmsgAlign(int n) => (n + 7) & ~7;
    private static int CmsgSpace(int dataLen) => CmsgAlign(sizeof(LibC.CMsgHdr)) + CmsgAlign(dataLen);

    /// <summary>
    /// Reads exactly <paramref name="buffer"/>.Length bytes; descriptors that came with them are appended to
    /// <paramref name="fds"/>. Returns false on orderly EOF before the first byte.
    /// </summary>
    public bool ReceiveExact(Span<byte> buffer, List<SafeFd>? fds) => ReceiveExact(buffer, fds, -1);

    /// <summary>
    /// As <see cref="ReceiveExact(Span{byte}, List{SafeFd}?)"/>, but never waits longer than <paramref name="timeoutMs"/>
    /// in total (-1: no limit): each recvmsg is MSG_DONTWAIT and an empty socket is waited for with poll.
    /// <see cref="TimeoutException"/> when the time runs out; the stream may then hold part of a message, so the caller
    /// must stop using the socket.
    /// </summary>
    public bool ReceiveExact(Span<byte> buffer, List<SafeFd>? fds, int timeoutMs)
    {
        int done = 0;
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        int flags = LibC.MSG_CMSG_CLOEXEC | (timeoutMs < 0 ? 0 : LibC.MSG_DONTWAIT);
        byte* control = stackalloc byte[CmsgSpace(MaxFds * sizeof(int))];
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            int sock = (int)_handle.DangerousGetHandle();
            while (done < buffer.Length)
            {
                fixed (byte* b = buffer)
                {
                    var iov = new LibC.IoVec { Base = b + done, Len = (nuint)(buffer.Length - done) };
                    var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1 };
                    if (fds is not null && done == 0)
                    {
                        msg.Control = control;
                        msg.ControlLen = (nuint)CmsgSpace(MaxFds * sizeof(int));
                    }
                    nint n = LibC.RecvMsg(sock, &msg, flags);
                    if (n < 0)
                    {
                        int e = LibC.Errno;
                        if (e == LibC.EINTR) continue;
                        if (e != LibC.EAGAIN || timeoutMs < 0) throw new IOException($"recvmsg failed: {LibC.Describe(e)}");
                        long left = deadline - Environment.TickCount64;
                        if (left <= 0) throw new TimeoutException($"nothing arrived for {timeoutMs} ms ({done} of {buffer.Length} bytes received)");
                        Wait(sock, LibC.POLLIN, (int)Math.Min(left, int.MaxValue));   // readable, or the wait ended: recvmsg again
                        continue;
                    }
                    if (msg.Control != null) CollectFds(&msg, fds!);
                    if ((msg.Flags & LibC.MSG_CTRUNC) != 0)
                        throw new VhostProtocolException($"message carried more than {MaxFds} file descriptors (control data truncated)");
                    if (n == 0)
                    {
                        if (done == 0) return false;
                        throw new EndOfStreamException($"peer closed the socket after {done} of {buffer.Length} bytes");
                    }
                    done += (int)n;
                }
            }
            return true;
        }
        finally
        {
            if (added) _handle.DangerousRelease();
        }
    }

    private static void CollectFds(LibC.MsgHdr* msg, List<SafeFd> fds)
    {
        byte* p = (byte*)msg->Control;
        byte* end = p + (long)msg->ControlLen;
        while (p + sizeof(LibC.CMsgHdr) <= end)
        {
            var h = (LibC.CMsgHdr*)p;
            if (h->Len < (nuint)sizeof(LibC.CMsgHdr) || p + (long)h->Len > end) break;
            if (h->Level == LibC.SOL_SOCKET && h->Type == LibC.SCM_RIGHTS)
            {
                int count = (int)(((long)h->Len - CmsgAlign(sizeof(LibC.CMsgHdr))) / sizeof(int));
                int* fdp = (int*)(p + CmsgAlign(sizeof(LibC.CMsgHdr)));
                // Own every descriptor at once, even past the cap, so each is closed exactly once.
                for (int i = 0; i < count; i++) fds.Add(new SafeFd(fdp[i]));
            }
            p += CmsgAlign((int)h->Len);
        }
    }

    /// <summary>Sends all of <paramref name="data"/>, with <paramref name="fds"/> attached to the first byte; <see cref="IOException"/> if it cannot within <paramref name="timeoutMs"/> (-1: no limit).</summary>
    public void Send(ReadOnlySpan<byte> data, ReadOnlySpan<SafeFd> fds = default, int timeoutMs = -1)
    {
        if (!TrySend(data, fds, timeoutMs, out string? error)) throw new IOException(error);
    }

    /// <summary>
    /// Sends all of <paramref name="data"/> without ever blocking longer than <paramref name="timeoutMs"/> in total
    /// (-1: no limit): each sendmsg is MSG_DONTWAIT and a full socket is waited for with poll. On false the stream may
    /// hold part of the message, so the caller must stop using the socket; <paramref name="error"/> says why.
    /// </summary>
    public bool TrySend(ReadOnlySpan<byte> data, ReadOnlySpan<SafeFd> fds, int timeoutMs, out string? error) =>
        TrySend(data, fds, timeoutMs, null, out error);

    /// <summary>
    /// As <see cref="TrySend(ReadOnlySpan{byte}, ReadOnlySpan{SafeFd}, int, out string?)"/>, but while nothing of the
    /// message has gone out yet, <paramref name="abandon"/> returning true gives up at once (false, error null): the
    /// stream is still whole, so the socket stays usable.
    /// </summary>
    public bool TrySend(ReadOnlySpan<byte> data, ReadOnlySpan<SafeFd> fds, int timeoutMs, Func<bool>? abandon, out string? error)
    {
        if (fds.Length > MaxFds) throw new ArgumentException($"at most {MaxFds} descriptors per message");
        int done = 0;
        int space = CmsgSpace(fds.Length * sizeof(int));
        byte* control = stackalloc byte[Math.Max(space, 1)];
        bool added = false;
        Span<bool> refs = stackalloc bool[MaxFds];
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        try
        {
            _handle.DangerousAddRef(ref added);
            for (int i = 0; i < fds.Length; i++) fds[i].DangerousAddRef(ref refs[i]);
            int sock = (int)_handle.DangerousGetHandle();
            while (done < data.Length)
            {
                fixed (byte* b = data)
                {
                    var iov = new LibC.IoVec { Base = b + done, Len = (nuint)(data.Length - done) };
                    var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1 };
                    if (done == 0 && fds.Length > 0)
                    {
                        new Span<byte>(control, space).Clear();
                        var h = (LibC.CMsgHdr*)control;
                        h->Len = (nuint)(CmsgAlign(sizeof(LibC.CMsgHdr)) + fds.Length * sizeof(int));
                        h->Level = LibC.SOL_SOCKET;
                        h->Type = LibC.SCM_RIGHTS;
                        int* fdp = (int*)(control + CmsgAlign(sizeof(LibC.CMsgHdr)));
                        for (int i = 0; i < fds.Length; i++) fdp[i] = fds[i].Fd;
                        msg.Control = control;
                        msg.ControlLen = (nuint)space;
                    }
                    nint n = LibC.SendMsg(sock, &msg, LibC.MSG_NOSIGNAL | LibC.MSG_DONTWAIT);
                    if (n >= 0) { done += (int)n; continue; }
                    int e = LibC.Errno;
                    if (e == LibC.EINTR) continue;
                    if (e != LibC.EAGAIN) { error = $"sendmsg failed: {LibC.Describe(e)}"; return false; }
                    if (done == 0 && abandon is not null && abandon()) { error = null; return false; }
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0)
                    {
                        error = $"the peer did not read for {timeoutMs} ms ({done} of {data.Length} bytes sent)";
                        return false;
                    }
                    int wait = deadline == long.MaxValue ? -1 : (int)Math.Min(left, int.MaxValue);
                    // With an abandon check, wait in short slices so it is seen soon.
                    if (abandon is not null && done == 0) wait = wait < 0 ? AbandonSliceMs : Math.Min(wait, AbandonSliceMs);
                    Wait(sock, LibC.POLLOUT, wait);   // writable, or the wait ended: sendmsg again, then the checks above
                }
            }
            error = null;
            return true;
        }
        finally
        {
            for (int i = 0; i < fds.Length; i++) if (refs[i]) fds[i].DangerousRelease();
            if (added) _handle.DangerousRelease();
        }
    }

    private const int AbandonSliceMs = 20;

    private static bool Wait(int sock, short events, int timeoutMs)
    {
        var p = new LibC.PollFd { Fd = sock, Events = events };
        while (true)
        {
            int r = LibC.Poll(&p, 1, timeoutMs);
            if (r > 0) return true;   // writable, or an error the next sendmsg reports
            if (r == 0) return false;
            if (LibC.Errno != LibC.EINTR) return false;
        }
    }

    /// <summary>Wakes a blocked receive with EOF (used to stop a server that is mid-connection).</summary>
    public void Shutdown()
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            LibC.Shutdown((int)_handle.DangerousGetHandle(), 2);
        }
        catch (ObjectDisposedException) { }
        finally { if (added) _handle.DangerousRelease(); }
    }

    public void Dispose() => _owner?.Dispose();
}
