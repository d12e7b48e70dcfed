%% Erlang anchor for bench_mailbox: local send throughput and ping-pong round
%% trip between two processes, run compiled (not through erl_eval) with
%% erl +S 2. Prints "<million msgs per s> <round trip mean µs>".
-module(mailbox_bench).
-export([run/0]).

run() ->
    N = 5000000,
    Self = self(),
    R = spawn(fun() -> sink(N, Self) end),
    T0 = erlang:monotonic_time(microsecond),
    send_n(R, N),
    receive done -> ok end,
    T1 = erlang:monotonic_time(microsecond),
    P = spawn(fun echo/0),
    M = 200000,
    T2 = erlang:monotonic_time(microsecond),
    ping(P, M),
    T3 = erlang:monotonic_time(microsecond),
    io:format("~.2f ~.3f~n", [N / (T1 - T0), (T3 - T2) / M]),
    halt().

sink(0, Parent) -> Parent ! done;
sink(K, Parent) -> receive _ -> sink(K - 1, Parent) end.

send_n(_, 0) -> ok;
send_n(R, K) -> R ! K, send_n(R, K - 1).

echo() -> receive {From, X} -> From ! X, echo() end.

ping(_, 0) -> ok;
ping(P, K) -> P ! {self(), K}, receive K -> ping(P, K - 1) end.
